//! `heimdall bench agent`: the node agent as a separate process, tailing N files written at a
//! fixed line rate and collecting host metrics every 15 s, shipping both to a minimal in-process
//! receiver (Loki push + remote_write, answering 204) so only the agent's work is measured.
//! Prints the agent's CPU (millicores) and peak RSS per rate, the end-to-end lag (line written →
//! line received) p50/p99, and — as the issue's comparison — CPU per host-metrics scrape of the
//! agent and of the Debian `prometheus-node-exporter` in the same run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use prost::Message;
use proto::loki::PushRequest;

use super::{free_port, proc_usage, spawn, tempfile_dir, wait_http};

/// Arguments of `bench agent`.
#[derive(clap::Args)]
pub struct AgentArgs {
    /// Line rates to run, lines per second over all files.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000u64, 10_000])]
    rates: Vec<u64>,
    /// Files the lines are spread over.
    #[arg(long, default_value_t = 50)]
    files: usize,
    /// Measured seconds per rate (after a 3 s warm-up).
    #[arg(long, default_value_t = 30)]
    secs: u64,
    /// Bytes per line (padding included).
    #[arg(long, default_value_t = 200)]
    line_bytes: usize,
    /// Host-metrics scrapes timed for the node_exporter comparison.
    #[arg(long, default_value_t = 50)]
    scrapes: u32,
    /// Keep the work directory (printed) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

/// What the receiver saw.
#[derive(Default)]
struct Received {
    lines: AtomicU64,
    samples: AtomicU64,
    /// Lag of every line received, in µs.
    lags_us: Mutex<Vec<u64>>,
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Lines start with `t=<ns written> `.
fn written_at(line: &str) -> Option<i64> {
    line.strip_prefix("t=")?.split(' ').next()?.parse().ok()
}

async fn start_receiver(rx: Arc<Received>) -> anyhow::Result<String> {
    let loki = {
        let rx = rx.clone();
        move |body: Bytes| {
            let rx = rx.clone();
            async move {
                let now = now_ns();
                let Ok(raw) = snap::raw::Decoder::new().decompress_vec(&body) else {
                    return StatusCode::BAD_REQUEST;
                };
                let Ok(push) = PushRequest::decode(raw.as_slice()) else {
                    return StatusCode::BAD_REQUEST;
                };
                let mut lags = Vec::new();
                for e in push.streams.iter().flat_map(|s| &s.entries) {
                    if let Some(t) = written_at(&e.line) {
                        lags.push(((now - t).max(0) / 1000) as u64);
                    }
                }
                rx.lines.fetch_add(lags.len() as u64, Ordering::Relaxed);
                rx.lags_us.lock().unwrap().extend(lags);
                StatusCode::NO_CONTENT
            }
        }
    };
    let rw = {
        let rx = rx.clone();
        move |body: Bytes| {
            let rx = rx.clone();
            async move {
                let Ok(raw) = snap::raw::Decoder::new().decompress_vec(&body) else {
                    return StatusCode::BAD_REQUEST;
                };
                let Ok(req) = proto::prometheus::WriteRequest::decode(raw.as_slice()) else {
                    return StatusCode::BAD_REQUEST;
                };
                rx.samples
                    .fetch_add(req.timeseries.len() as u64, Ordering::Relaxed);
                StatusCode::NO_CONTENT
            }
        }
    };
    let app = axum::Router::new()
        .route("/loki/api/v1/push", post(loki))
        .route("/api/v1/push", post(rw));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

/// Writes `rate` lines/s round-robin over `files` (at least one) until `stop`; returns lines
/// written.
fn write_lines(
    files: &[PathBuf],
    rate: u64,
    line_bytes: usize,
    stop: Arc<AtomicU64>,
) -> std::io::Result<u64> {
    use std::io::Write;
    let mut out: Vec<_> = files
        .iter()
        .map(|p| {
            std::fs::OpenOptions::new()
                .append(true)
                .open(p)
                .map(std::io::BufWriter::new)
        })
        .collect::<Result<_, _>>()?;
    let tick = Duration::from_millis(10);
    let per_tick = rate as f64 / 100.0;
    let t0 = Instant::now();
    let (mut n, mut due) = (0u64, 0f64);
    let mut line = String::with_capacity(line_bytes + 64);
    let mut k = 0usize;
    while stop.load(Ordering::Relaxed) == 0 {
        due += per_tick;
        while (n as f64) < due {
            line.clear();
            use std::fmt::Write as _;
            let _ = write!(
                line,
                "t={} seq={n} level=info msg=\"request served\" ",
                now_ns()
            );
            while line.len() < line_bytes {
                line.push('x');
            }
            line.push('\n');
            out[k].write_all(line.as_bytes())?;
            k = (k + 1) % out.len();
            n += 1;
        }
        for f in &mut out {
            f.flush()?;
        }
        let next = t0 + tick * ((due / per_tick) as u32);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    Ok(n)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// CPU seconds `pid` spends per GET of `url`, over `n` sequential scrapes.
async fn cpu_per_scrape(pid: u32, url: &str, n: u32) -> anyhow::Result<f64> {
    let c = reqwest::Client::new();
    // One untimed scrape: first-use costs (regex compilation, file handles) are not per scrape.
    c.get(url).send().await?.bytes().await?;
    let before = proc_usage(pid).0;
    for _ in 0..n {
        c.get(url).send().await?.error_for_status()?.bytes().await?;
    }
    Ok((proc_usage(pid).0 - before) / n as f64)
}

/// Runs the benchmark.
pub async fn run(a: AgentArgs) -> anyhow::Result<()> {
    let root = tempfile_dir()?;
    let rx = Arc::new(Received::default());
    let recv = start_receiver(rx.clone()).await?;
    let logs_dir = root.join("logs");
    std::fs::create_dir_all(&logs_dir)?;
    let files: Vec<PathBuf> = (0..a.files.max(1))
        .map(|i| logs_dir.join(format!("app-{i:03}.log")))
        .collect();
    for f in &files {
        std::fs::write(f, "")?;
    }
    let port = free_port()?;
    let cfg = root.join("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\nscrape_interval: 15s\ndata_dir: {}\nremote_write:\n  url: {recv}/api/v1/push\nlogs:\n  enabled: true\n  pod_logs_glob: ''\n  files: ['{}/*.log']\n",
            root.join("agent-data").display(),
            logs_dir.display()
        ),
    )?;
    let mut agent = spawn(
        Command::new(std::env::current_exe()?)
            .arg("agent")
            .arg("--config")
            .arg(&cfg)
            .env("RUST_LOG", "warn"),
        &root.join("agent.log"),
    )?;
    let result = measure(&a, &rx, &files, agent.id(), port, &root).await;
    let _ = agent.kill();
    let _ = agent.wait();
    if a.keep {
        println!("work directory kept: {}", root.display());
    } else {
        let _ = std::fs::remove_dir_all(&root);
    }
    result
}

async fn measure(
    a: &AgentArgs,
    rx: &Arc<Received>,
    files: &[PathBuf],
    pid: u32,
    port: u16,
    root: &Path,
) -> anyhow::Result<()> {
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    wait_http(&format!("http://127.0.0.1:{port}/ready")).await?;
    println!(
        "workload: {} files, {} B lines, {} s per rate, host metrics every 15 s, agent pid {pid}",
        files.len(),
        a.line_bytes,
        a.secs
    );

    // Host metrics: CPU per scrape, agent vs node_exporter.
    let ours = cpu_per_scrape(pid, &metrics_url, a.scrapes).await?;
    let theirs = if super::which("prometheus-node-exporter") {
        let ne_port = free_port()?;
        let mut ne = spawn(
            Command::new("prometheus-node-exporter")
                .arg(format!("--web.listen-address=127.0.0.1:{ne_port}")),
            &root.join("node_exporter.log"),
        )?;
        let url = format!("http://127.0.0.1:{ne_port}/metrics");
        let r = async {
            wait_http(&url).await?;
            cpu_per_scrape(ne.id(), &url, a.scrapes).await
        }
        .await;
        let _ = ne.kill();
        let _ = ne.wait();
        Some(r.context("node_exporter")?)
    } else {
        None
    };
    println!("\nhost metrics, CPU per scrape ({} scrapes):", a.scrapes);
    println!("  heimdall agent             {:8.2} ms", ours * 1e3);
    match theirs {
        Some(t) => println!(
            "  prometheus-node-exporter   {:8.2} ms   (agent/node_exporter = {:.2}×)",
            t * 1e3,
            ours / t.max(1e-9)
        ),
        None => println!("  prometheus-node-exporter   not installed"),
    }

    println!(
        "\n{:>10} {:>12} {:>10} {:>12} {:>12} {:>16}",
        "lines/s", "millicores", "RSS MiB", "lag p50 ms", "lag p99 ms", "delivered"
    );
    for &rate in &a.rates {
        let base = rx.lines.load(Ordering::Relaxed);
        let stop = Arc::new(AtomicU64::new(0));
        let writer = {
            let (files, stop, lb) = (files.to_vec(), stop.clone(), a.line_bytes);
            std::thread::spawn(move || write_lines(&files, rate, lb, stop))
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        rx.lags_us.lock().unwrap().clear();
        let (cpu0, _) = proc_usage(pid);
        let t0 = Instant::now();
        let mut peak_rss = 0u64;
        while t0.elapsed() < Duration::from_secs(a.secs) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            peak_rss = peak_rss.max(proc_usage(pid).1);
        }
        let (cpu1, _) = proc_usage(pid);
        let wall = t0.elapsed().as_secs_f64();
        stop.store(1, Ordering::Relaxed);
        let written = tokio::task::spawn_blocking(move || writer.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the line writer panicked"))?
            .context("writing the tailed files")?;
        // Let the backlog drain so every written line is counted.
        let deadline = Instant::now() + Duration::from_secs(30);
        while rx.lines.load(Ordering::Relaxed) - base < written && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut lags = std::mem::take(&mut *rx.lags_us.lock().unwrap());
        lags.sort_unstable();
        println!(
            "{:>10} {:>12.1} {:>10.1} {:>12.1} {:>12.1} {:>16}",
            rate,
            (cpu1 - cpu0) / wall * 1000.0,
            peak_rss as f64 / (1 << 20) as f64,
            percentile(&lags, 0.5),
            percentile(&lags, 0.99),
            format!("{}/{}", rx.lines.load(Ordering::Relaxed) - base, written),
        );
    }
    println!(
        "\nremote_write series received: {} (host metrics every 15 s)",
        rx.samples.load(Ordering::Relaxed)
    );
    println!("target (issue): ≤ 20 millicores and ≤ 40 MiB at 1k lines/s");
    Ok(())
}
