//! `heimdall bench logs`: a seeded, realistic log corpus (nginx access logs, JSON app logs,
//! logfmt, multi-line stack traces) pushed to a heimdall process over the Loki push API, then
//! brute-force queries over all of it. Prints ingest throughput per server CPU-second, the
//! on-disk compression ratio, line-filter scan speed and query latencies, beside this machine's
//! physical references measured in the same run on the same bytes (`zstd -d` and a raw `memchr`
//! substring scan).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use prost::Message;
use proto::loki::{EntryAdapter, PushRequest, StreamAdapter, Timestamp};

use super::{dir_size, proc_usage, start_heimdall, tempfile_dir, Rng};

/// Arguments of `bench logs`.
#[derive(clap::Args)]
pub struct LogsArgs {
    /// Corpus size in MiB of raw line bytes.
    #[arg(long, default_value_t = 1024)]
    mib: usize,
    /// Streams the corpus is spread over.
    #[arg(long, default_value_t = 64)]
    streams: usize,
    /// Concurrent push connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Keep the data directory (printed) instead of deleting it.
    #[arg(long)]
    keep: bool,
    /// Also write the corpus (one entry per line) to this file, e.g. to try `zstd` on it.
    #[arg(long)]
    dump: Option<std::path::PathBuf>,
}

/// The rare string the filter benchmark looks for (one line in 100,000 carries it).
const NEEDLE: &str = "needle-7f3a9c";

const PATHS: &[&str] = &[
    "/api/v1/orders",
    "/api/v1/cart",
    "/api/v1/users/me",
    "/healthz",
    "/static/app.js",
    "/api/v1/search",
    "/login",
    "/api/v1/payments",
    "/metrics",
    "/api/v1/products",
];
/// Typical response size of each of `PATHS`.
const SIZES: &[u64] = &[
    2_310, 1_045, 612, 2, 48_213, 7_730, 1_530, 388, 12_004, 9_870,
];
const METHODS: &[&str] = &["GET", "GET", "GET", "POST", "PUT", "DELETE"];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
    "curl/8.4.0",
    "Go-http-client/1.1",
    "kube-probe/1.29",
];
const MSGS: &[&str] = &[
    "request served",
    "cache miss",
    "order created",
    "payment authorized",
    "user logged in",
    "retrying upstream call",
    "connection reset by peer",
    "slow query detected",
    "token refreshed",
];
const LEVELS: &[&str] = &["info", "info", "info", "info", "debug", "warn", "error"];

fn status(r: &mut Rng) -> u32 {
    match r.below(100) {
        0..=84 => 200,
        85..=89 => 201,
        90..=93 => 404,
        94..=96 => 500,
        _ => 503,
    }
}

/// One line of stream kind `kind` (0 nginx, 1 json, 2 logfmt, 3 stack traces).
fn line(kind: usize, r: &mut Rng, ts_s: i64, out: &mut String) {
    use std::fmt::Write;
    out.clear();
    match kind {
        0 => {
            let client = r.skewed(2_000);
            let path = r.below(PATHS.len() as u64) as usize;
            let _ = write!(
                out,
                "10.{}.{}.{} - - [{}] \"{} {} HTTP/1.1\" {} {} \"-\" \"{}\"",
                client >> 16,
                (client >> 8) & 255,
                client & 255,
                ts_s,
                r.pick(METHODS),
                PATHS[path],
                status(r),
                SIZES[path] + r.below(64),
                AGENTS[(client % AGENTS.len() as u64) as usize]
            );
        }
        1 => {
            let _ = write!(
                out,
                "{{\"ts\":{ts_s},\"level\":\"{}\",\"msg\":\"{}\",\"status\":{},\"latency_ms\":{},\"path\":\"{}\",\"user\":{{\"id\":\"u{}\"}},\"trace_id\":\"{:016x}\"}}",
                r.pick(LEVELS),
                r.pick(MSGS),
                status(r),
                r.skewed(2_000),
                r.pick(PATHS),
                r.skewed(5_000),
                r.next()
            );
        }
        2 => {
            let _ = write!(
                out,
                "ts={ts_s} level={} msg=\"{}\" duration={}ms bytes={}KB status={} caller=server.go:{}",
                r.pick(LEVELS),
                r.pick(MSGS),
                r.skewed(2_000),
                r.skewed(512),
                status(r),
                100 + r.below(40)
            );
        }
        _ => {
            let _ = write!(
                out,
                "java.lang.IllegalStateException: {}\n\tat com.shop.orders.OrderService.place(OrderService.java:{})\n\tat com.shop.orders.OrderController.post(OrderController.java:{})\n\tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:897)\n\tat java.base/java.lang.Thread.run(Thread.java:833)",
                r.pick(MSGS),
                100 + r.below(300),
                40 + r.below(60)
            );
        }
    }
}

struct Corpus {
    /// Encoded push bodies, sharded by connection (each stream stays on one connection).
    shards: Vec<Vec<Vec<u8>>>,
    raw_bytes: u64,
    lines: u64,
    /// Every line back to back (for the in-process physical references).
    all: Vec<u8>,
    start_ns: i64,
    end_ns: i64,
}

fn build(a: &LogsArgs, now_ns: i64) -> Corpus {
    let target = (a.mib as u64) << 20;
    let streams = a.streams.max(4);
    let per_stream = target / streams as u64;
    let span_ns: i64 = 3_600 * 1_000_000_000;
    let start_ns = now_ns - span_ns;
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut shards: Vec<Vec<Vec<u8>>> = vec![Vec::new(); a.connections.max(1)];
    let mut all = Vec::with_capacity(target as usize + (1 << 20));
    let mut lines = 0u64;
    let mut buf = String::new();
    // ~200 B per line on average: estimate the entry count per stream to spread timestamps.
    let est_lines = (per_stream / 200).max(1) as i64;
    for s in 0..streams {
        let kind = s % 4;
        let labels = format!(
            "{{job=\"bench\", kind=\"{}\", app=\"app-{}\", pod=\"pod-{}\"}}",
            ["nginx", "json", "logfmt", "java"][kind],
            s % 8,
            s
        );
        let mut bytes = 0u64;
        let mut i = 0i64;
        let mut batch: Vec<EntryAdapter> = Vec::new();
        let mut batch_bytes = 0usize;
        while bytes < per_stream {
            let ts = start_ns + (i * span_ns / est_lines).min(span_ns - 1);
            line(kind, &mut r, ts / 1_000_000_000, &mut buf);
            if lines % 100_000 == 99_999 {
                buf.push(' ');
                buf.push_str(NEEDLE);
            }
            bytes += buf.len() as u64;
            all.extend_from_slice(buf.as_bytes());
            all.push(b'\n');
            lines += 1;
            i += 1;
            batch_bytes += buf.len();
            batch.push(EntryAdapter {
                timestamp: Some(Timestamp {
                    seconds: ts.div_euclid(1_000_000_000),
                    nanos: ts.rem_euclid(1_000_000_000) as i32,
                }),
                line: buf.clone(),
                structured_metadata: Vec::new(),
                parsed: Vec::new(),
            });
            if batch_bytes >= 1 << 20 || bytes >= per_stream {
                let req = PushRequest {
                    streams: vec![StreamAdapter {
                        labels: labels.clone(),
                        entries: std::mem::take(&mut batch),
                        hash: 0,
                    }],
                };
                let body = snap::raw::Encoder::new()
                    .compress_vec(&req.encode_to_vec())
                    .unwrap_or_default();
                let n = shards.len();
                shards[s % n].push(body);
                batch_bytes = 0;
            }
        }
    }
    let raw_bytes = all.len() as u64 - lines;
    Corpus {
        shards,
        raw_bytes,
        lines,
        all,
        start_ns,
        end_ns: now_ns,
    }
}

fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64().max(1e-9) / 1e9
}

/// Physical references on the same bytes: zstd (level 3, 1 MiB frames) decompression and a raw
/// `memchr::memmem` scan for the needle.
fn references(all: &[u8]) -> (f64, f64, f64) {
    let frames: Vec<Vec<u8>> = all
        .chunks(1 << 20)
        .map(|c| zstd::bulk::compress(c, 3).unwrap_or_default())
        .collect();
    let compressed: usize = frames.iter().map(Vec::len).sum();
    let t = Instant::now();
    let mut out = Vec::with_capacity(1 << 20);
    let mut total = 0usize;
    for f in &frames {
        out.clear();
        let mut d = zstd::bulk::Decompressor::new().expect("zstd");
        out = d.decompress(f, 1 << 21).unwrap_or_default();
        total += out.len();
    }
    let zstd_gbps = gbps(total as u64, t.elapsed());
    let finder = memchr::memmem::Finder::new(NEEDLE.as_bytes());
    let t = Instant::now();
    let hits = finder.find_iter(all).count();
    let scan_gbps = gbps(all.len() as u64, t.elapsed());
    std::hint::black_box(hits);
    (
        zstd_gbps,
        scan_gbps,
        all.len() as f64 / compressed.max(1) as f64,
    )
}

async fn push_all(url: &str, shards: &[Vec<Vec<u8>>]) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for shard in shards {
        let shard = shard.clone();
        let client = client.clone();
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            for body in shard {
                let r = client
                    .post(&url)
                    .header("Content-Type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!(
                        "push failed: {} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    );
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn timed_query(
    base: &str,
    pid: u32,
    path: &str,
    params: &[(&str, String)],
) -> anyhow::Result<(Duration, f64, serde_json::Value)> {
    let client = reqwest::Client::new();
    let (cpu0, _) = proc_usage(pid);
    let t = Instant::now();
    let r = client
        .get(format!("{base}{path}"))
        .query(params)
        .send()
        .await?;
    let status = r.status();
    let body: serde_json::Value = serde_json::from_str(&r.text().await?).unwrap_or_default();
    let d = t.elapsed();
    let (cpu1, _) = proc_usage(pid);
    if !status.is_success() {
        bail!("{path} failed: {status} {body}");
    }
    Ok((d, cpu1 - cpu0, body))
}

/// Runs the benchmark.
pub async fn run(a: LogsArgs) -> anyhow::Result<()> {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as i64;
    println!(
        "generating {} MiB of logs over {} streams…",
        a.mib, a.streams
    );
    let corpus = build(&a, now_ns);
    let raw_mb = corpus.raw_bytes as f64 / 1e6;
    println!(
        "corpus: {} lines, {:.0} MB of line bytes, {} requests",
        corpus.lines,
        raw_mb,
        corpus.shards.iter().map(Vec::len).sum::<usize>()
    );
    if let Some(path) = &a.dump {
        std::fs::write(path, &corpus.all).with_context(|| format!("writing {}", path.display()))?;
    }
    let (zstd_gbps, scan_gbps, zstd_ratio) = references(&corpus.all);

    let root = tempfile_dir()?;
    let target = start_heimdall(&root, "  block_duration: 2h\n")
        .await
        .context("starting heimdall")?;
    let base = target
        .write_url
        .trim_end_matches("/api/v1/write")
        .to_string();
    let pid = target.child.id();
    let (cpu0, _) = proc_usage(pid);
    let t = Instant::now();
    push_all(&format!("{base}/loki/api/v1/push"), &corpus.shards).await?;
    let wall = t.elapsed();
    let (cpu1, rss) = proc_usage(pid);
    let ingest_cpu = (cpu1 - cpu0).max(1e-9);
    let r = reqwest::Client::new()
        .post(format!("{base}/ingester/flush"))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("flush failed: {}", r.text().await.unwrap_or_default());
    }
    // CPU of cutting the head into blocks (chunks recompressed harder) counts as ingest too.
    let (cpu2, _) = proc_usage(pid);
    let total_cpu = (cpu2 - cpu0).max(1e-9);
    let disk = dir_size(&root.join("heimdall").join("data").join("blocks"));

    let range = [
        ("start", (corpus.start_ns - 60_000_000_000).to_string()),
        ("end", (corpus.end_ns + 60_000_000_000).to_string()),
    ];
    let mut filter_params = vec![
        ("query", format!("{{job=\"bench\"}} |= \"{NEEDLE}\"")),
        ("limit", "1000".to_string()),
    ];
    filter_params.extend(range.iter().cloned());
    // Warm the block index caches once, then measure.
    let _ = timed_query(&base, pid, "/loki/api/v1/query_range", &filter_params).await?;
    let (filter_d, filter_cpu, body) =
        timed_query(&base, pid, "/loki/api/v1/query_range", &filter_params).await?;
    let hits: usize = body["data"]["result"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["values"].as_array().map_or(0, Vec::len))
                .sum()
        })
        .unwrap_or(0);
    let instant = |q: &str| {
        vec![
            ("query", q.to_string()),
            ("time", corpus.end_ns.to_string()),
        ]
    };
    let (count_d, _, _) = timed_query(
        &base,
        pid,
        "/loki/api/v1/query",
        &instant("sum(count_over_time({job=\"bench\"}[2h]))"),
    )
    .await?;
    let (json_d, _, _) = timed_query(
        &base,
        pid,
        "/loki/api/v1/query",
        &instant(
            "sum(count_over_time({job=\"bench\", kind=\"json\"} | json | status >= 500 [2h]))",
        ),
    )
    .await?;

    println!();
    println!("| figure | heimdall | reference on this machine |");
    println!("|---|---|---|");
    println!(
        "| ingest | {:.1} MB/s per server CPU-second acknowledged ({:.1} MB/s wall, {} connections); {:.1} MB/s per CPU-second including block compression | target ≥ 50 |",
        raw_mb / ingest_cpu,
        raw_mb / wall.as_secs_f64(),
        a.connections,
        raw_mb / total_cpu
    );
    println!(
        "| compression | {:.1}× ({:.0} MB on disk) | zstd -3 on 1 MiB frames: {:.1}× |",
        corpus.raw_bytes as f64 / disk.max(1) as f64,
        disk as f64 / 1e6,
        zstd_ratio
    );
    println!(
        "| `|= \"needle\"` over all data | {:.2} GB/s wall, {:.2} GB/s per CPU-second ({} hits, {:.0} ms) | memchr scan {:.2} GB/s, zstd -d {:.2} GB/s |",
        gbps(corpus.raw_bytes, filter_d),
        corpus.raw_bytes as f64 / filter_cpu.max(1e-9) / 1e9,
        hits,
        filter_d.as_secs_f64() * 1e3,
        scan_gbps,
        zstd_gbps
    );
    println!(
        "| `sum(count_over_time({{job=\"bench\"}}[2h]))` | {:.0} ms | |",
        count_d.as_secs_f64() * 1e3
    );
    println!(
        "| `… kind=\"json\"}} | json | status >= 500` | {:.0} ms | |",
        json_d.as_secs_f64() * 1e3
    );
    println!("| server RSS after ingest | {:.0} MB | |", rss as f64 / 1e6);
    if a.keep {
        println!("data kept in {}", root.display());
    } else {
        drop(target);
        let _ = std::fs::remove_dir_all(&root);
    }
    Ok(())
}
