//! `heimdall bench …`: reproducible benchmarks that print figures (never asserted in tests).
//!
//! `bench ingest` starts each target as a separate process on loopback (heimdall itself, and the
//! Debian `prometheus` and `victoria-metrics` binaries when installed), replays the same pre-encoded
//! remote_write requests to each, and prints throughput, server CPU, memory and disk per sample, with
//! ratios against the peers. Requests are encoded before the clock starts so the client's work is not
//! measured; series are sharded over connections (as Prometheus' queue manager does) so that every
//! series' samples arrive in order.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Subcommand;
use prost::Message;
use proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};

mod agent;
mod logs;
mod query;
mod traces;
pub use agent::AgentArgs;
pub use logs::LogsArgs;
pub use query::QueryArgs;
pub use traces::TracesArgs;

/// Benchmarks.
#[derive(Subcommand)]
pub enum BenchCmd {
    /// Remote-write ingest: N series × M samples to each target, one process per target.
    Ingest(IngestArgs),
    /// Query latency: dashboard-shaped range queries on the same data in heimdall and Prometheus.
    Query(QueryArgs),
    /// Logs: Loki-push ingest of a realistic corpus, compression, brute-force filter scans.
    Logs(LogsArgs),
    /// Traces: OTLP ingest, bytes per span, trace-by-id latency, TraceQL search.
    Traces(TracesArgs),
    /// Node agent: CPU, memory and lag while tailing files at fixed line rates, and CPU per
    /// host-metrics scrape against prometheus-node-exporter.
    Agent(AgentArgs),
}

/// Arguments of `bench ingest`.
#[derive(clap::Args)]
pub struct IngestArgs {
    /// Number of series (node-exporter shaped: ~100 series per host).
    #[arg(long, default_value_t = 100_000)]
    series: usize,
    /// Samples per series (15 s apart, ending now).
    #[arg(long, default_value_t = 120)]
    samples: usize,
    /// Samples per request (Prometheus sends up to 2,000 in 2.x).
    #[arg(long, default_value_t = 2_000)]
    batch: usize,
    /// Concurrent connections; series are sharded over them.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// How sample values are generated.
    #[arg(long, value_enum, default_value_t = Values::Realistic)]
    values: Values,
    /// Only benchmark heimdall, even if peers are installed.
    #[arg(long)]
    no_peers: bool,
    /// Keep the data directories (printed) instead of deleting them.
    #[arg(long)]
    keep: bool,
}

/// Runs a benchmark.
pub async fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Ingest(a) => ingest(a).await,
        BenchCmd::Query(a) => query::run(a).await,
        BenchCmd::Logs(a) => logs::run(a).await,
        BenchCmd::Traces(a) => traces::run(a).await,
        BenchCmd::Agent(a) => agent::run(a).await,
    }
}

const METRICS: &[(&str, &[(&str, usize)])] = &[
    ("node_cpu_seconds_total", &[("cpu", 4), ("mode", 8)]),
    ("node_disk_io_time_seconds_total", &[("device", 4)]),
    ("node_disk_read_bytes_total", &[("device", 4)]),
    ("node_disk_written_bytes_total", &[("device", 4)]),
    ("node_network_receive_bytes_total", &[("device", 4)]),
    ("node_network_transmit_bytes_total", &[("device", 4)]),
    ("node_filesystem_avail_bytes", &[("mountpoint", 4)]),
    ("node_filesystem_size_bytes", &[("mountpoint", 4)]),
    ("node_memory_MemAvailable_bytes", &[]),
    ("node_memory_MemFree_bytes", &[]),
    ("node_memory_Cached_bytes", &[]),
    ("node_load1", &[]),
    ("node_load5", &[]),
    ("node_load15", &[]),
    ("node_context_switches_total", &[]),
    ("node_intr_total", &[]),
    ("node_procs_running", &[]),
    ("node_vmstat_pgfault", &[]),
    ("node_sockstat_TCP_inuse", &[]),
    ("node_filefd_allocated", &[]),
];

/// Label sets of `n` node-exporter-shaped series.
fn series_labels(n: usize) -> Vec<Vec<Label>> {
    let mut per_host = Vec::new();
    for (name, dims) in METRICS {
        let mut combos: Vec<Vec<(String, String)>> = vec![vec![]];
        for (dim, card) in *dims {
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    (0..*card).map(move |i| {
                        let mut c = c.clone();
                        c.push((dim.to_string(), format!("{dim}{i}")));
                        c
                    })
                })
                .collect();
        }
        for c in combos {
            per_host.push((name.to_string(), c));
        }
    }
    let mut out = Vec::with_capacity(n);
    let mut host = 0;
    while out.len() < n {
        for (name, dims) in &per_host {
            if out.len() == n {
                break;
            }
            let mut l = vec![
                Label {
                    name: "__name__".into(),
                    value: name.clone(),
                },
                Label {
                    name: "instance".into(),
                    value: format!("host-{host}:9100"),
                },
                Label {
                    name: "job".into(),
                    value: "node".into(),
                },
            ];
            l.extend(dims.iter().map(|(k, v)| Label {
                name: k.clone(),
                value: v.clone(),
            }));
            l.sort_by(|a, b| a.name.cmp(&b.name));
            out.push(l);
        }
        host += 1;
    }
    out
}

/// How `bench ingest` makes sample values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Values {
    /// Each metric moves the way node_exporter's does at a 15 s interval: CPU seconds in 1/100 s
    /// ticks (idle ≈ 15 s per step, iowait/steal mostly flat), byte counters in 512/4096 steps
    /// and often idle, sizes constant, memory in KiB steps, loads with two decimals.
    Realistic,
    /// A hash of (series, step) — ≈ 0.70 bytes/sample of entropy, the worst case for any encoder.
    Random,
}

/// A deterministic pseudo-random number of (series, step, salt).
fn mix(series: usize, k: usize, salt: u64) -> u64 {
    let mut x = (series as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (k as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)
        ^ salt.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    x = x.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    x ^ (x >> 29)
}

/// Random mode: counters grow by small integers, gauges wander with two decimals.
fn random_value(series: usize, k: usize, counter: bool) -> f64 {
    let x = mix(series, k, 0);
    if counter {
        (series as f64) * 1000.0 + (k as f64) * 37.0 + (x % 17) as f64
    } else {
        ((series % 1000) as f64) * 1.5 + (x % 1000) as f64 / 100.0
    }
}

/// Realistic mode: the value of `series` (its labels `l`) at step `k`, given the previous value.
fn realistic_value(l: &[Label], series: usize, k: usize, prev: Option<f64>) -> f64 {
    let name = l
        .iter()
        .find(|x| x.name == "__name__")
        .map_or("", |x| &*x.value);
    let label = |n: &str| l.iter().find(|x| x.name == n).map_or("", |x| &*x.value);
    let r = mix(series, k, 1);
    let start = (mix(series, 0, 2) % 1_000_000) as f64;
    let busy = r % 100; // percent-like draw for "does this step move"
                        // Counters: (first value, increment this step).
    let counter = |first: f64, inc: f64| prev.map_or(first, |p| p + inc);
    let round = |v: f64, unit: f64| (v / unit).round() * unit;
    match name {
        "node_cpu_seconds_total" => {
            let inc = match label("mode") {
                "mode0" => 14.0 + (r % 100) as f64 / 100.0,       // idle
                "mode1" => ((r % 60) as f64) / 100.0,             // user
                "mode2" => ((r % 25) as f64) / 100.0,             // system
                "mode3" if busy < 10 => ((r % 5) as f64) / 100.0, // iowait
                "mode4" if busy < 5 => 0.01,                      // irq
                "mode5" if busy < 20 => ((r % 3) as f64) / 100.0, // softirq
                _ => 0.0,                                         // nice, steal
            };
            round(counter(round(start / 10.0, 0.01), inc), 0.01)
        }
        "node_disk_io_time_seconds_total" => {
            let inc = if busy < 30 {
                (r % 200) as f64 / 1000.0
            } else {
                0.0
            };
            round(counter(start / 100.0, inc), 0.001)
        }
        "node_disk_read_bytes_total" => {
            let inc = if busy < 5 {
                ((r >> 8) % 64 * 4096) as f64
            } else {
                0.0
            };
            counter(start * 4096.0, inc)
        }
        "node_disk_written_bytes_total" => {
            let inc = if busy < 60 {
                ((r >> 8) % 256 * 4096) as f64
            } else {
                0.0
            };
            counter(start * 4096.0, inc)
        }
        "node_network_receive_bytes_total" | "node_network_transmit_bytes_total" => {
            let inc = if label("device") == "device3" {
                0.0
            } else {
                ((r >> 8) % 50_000) as f64
            };
            counter(start * 1000.0, inc)
        }
        "node_filesystem_size_bytes" => start * 4096.0 * 16.0,
        "node_filesystem_avail_bytes" => {
            let base = prev.unwrap_or(start * 4096.0 * 8.0);
            if busy < 20 {
                base - ((r >> 8) % 16 * 4096) as f64
            } else {
                base
            }
        }
        "node_memory_MemAvailable_bytes"
        | "node_memory_MemFree_bytes"
        | "node_memory_Cached_bytes" => {
            let base = prev.unwrap_or(start * 4096.0 + 4e9);
            base + ((r >> 8) % 2048) as f64 * 1024.0 - 1024.0 * 1024.0
        }
        "node_load1" | "node_load5" | "node_load15" => {
            let base = prev.unwrap_or((start % 300.0) / 100.0);
            round((base + ((r % 21) as f64 - 10.0) / 100.0).max(0.0), 0.01)
        }
        "node_context_switches_total" | "node_intr_total" | "node_vmstat_pgfault" => {
            counter(start * 1000.0, (20_000 + (r >> 8) % 5_000) as f64)
        }
        "node_procs_running" => (1 + r % 4) as f64,
        "node_sockstat_TCP_inuse" | "node_filefd_allocated" => {
            let base = prev.unwrap_or((start % 2000.0).round());
            if busy < 10 {
                base + (r % 3) as f64 - 1.0
            } else {
                base
            }
        }
        _ => random_value(series, k, name.ends_with("_total")),
    }
}

/// Pre-encodes every request, grouped by connection shard, in send order.
fn build_requests(a: &IngestArgs, now_ms: i64) -> Vec<Vec<Vec<u8>>> {
    let labels = series_labels(a.series);
    let counters: Vec<bool> = labels
        .iter()
        .map(|l| {
            l.iter()
                .any(|x| x.name == "__name__" && x.value.ends_with("_total"))
        })
        .collect();
    let t0 = now_ms - (a.samples as i64) * 15_000;
    let mut shards: Vec<Vec<Vec<u8>>> = vec![Vec::new(); a.connections];
    let mut enc = snap::raw::Encoder::new();
    let mut last: Vec<Option<f64>> = vec![None; a.series];
    for (shard_no, shard) in shards.iter_mut().enumerate() {
        let ids: Vec<usize> = (shard_no..a.series).step_by(a.connections).collect();
        for k in 0..a.samples {
            for chunk in ids.chunks(a.batch.max(1)) {
                let req = WriteRequest {
                    timeseries: chunk
                        .iter()
                        .map(|&i| {
                            let value = match a.values {
                                Values::Random => random_value(i, k, counters[i]),
                                Values::Realistic => realistic_value(&labels[i], i, k, last[i]),
                            };
                            last[i] = Some(value);
                            TimeSeries {
                                labels: labels[i].clone(),
                                samples: vec![Sample {
                                    value,
                                    timestamp: t0 + k as i64 * 15_000,
                                }],
                                ..Default::default()
                            }
                        })
                        .collect(),
                    ..Default::default()
                };
                shard.push(enc.compress_vec(&req.encode_to_vec()).expect("snappy"));
            }
        }
    }
    shards
}

/// A target server process.
struct Target {
    name: &'static str,
    child: Child,
    write_url: String,
    /// Called after ingest to make data durable in its final form; returns the directory to measure.
    flush_url: Option<String>,
    measure: PathBuf,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_http(url: &str) -> anyhow::Result<()> {
    let c = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = c.get(url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{url} did not become ready")
}

fn spawn(cmd: &mut Command, log: &Path) -> anyhow::Result<Child> {
    let f = std::fs::File::create(log)?;
    Ok(cmd
        .stdout(Stdio::from(f.try_clone()?))
        .stderr(Stdio::from(f))
        .spawn()?)
}

/// Starts heimdall with `extra_yaml` appended to the benchmark config (auth off, limits off).
async fn start_heimdall(root: &Path, extra_yaml: &str) -> anyhow::Result<Target> {
    let port = free_port()?;
    let data = root.join("heimdall");
    std::fs::create_dir_all(&data)?;
    let cfg = data.join("bench.yaml");
    std::fs::write(
        &cfg,
        format!(
            "auth:\n  enabled: false\nlimits:\n  ingestion_rate: 0\n  max_active_series: 0\n  ingestion_rate_mb: 0\n  ingestion_rate_limit_bytes: 0\n  metrics_generator_processors: []\nstorage:\n  data_dir: {}\n{extra_yaml}",
            data.join("data").display()
        ),
    )?;
    let exe = std::env::current_exe()?;
    let child = spawn(
        Command::new(exe)
            .arg("server")
            .arg("--config")
            .arg(&cfg)
            .arg("--http-listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--otlp-grpc-listen=")
            .arg("--otlp-http-listen=")
            .env("RUST_LOG", "warn"),
        &root.join("heimdall.log"),
    )?;
    let base = format!("http://127.0.0.1:{port}");
    wait_http(&format!("{base}/ready")).await?;
    Ok(Target {
        name: "heimdall",
        child,
        write_url: format!("{base}/api/v1/write"),
        flush_url: Some(format!("{base}/ingester/flush")),
        measure: data.join("data").join("blocks"),
    })
}

/// Starts Prometheus (remote-write receiver on) with `extra_yaml` appended to its config.
async fn start_prometheus(root: &Path, extra_yaml: &str) -> anyhow::Result<Target> {
    let port = free_port()?;
    let data = root.join("prometheus");
    std::fs::create_dir_all(&data)?;
    let cfg = data.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!("global:\n  scrape_interval: 1h\n{extra_yaml}"),
    )?;
    let child = spawn(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                data.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver"),
        &root.join("prometheus.log"),
    )?;
    let base = format!("http://127.0.0.1:{port}");
    wait_http(&format!("{base}/-/ready")).await?;
    Ok(Target {
        name: "prometheus",
        child,
        write_url: format!("{base}/api/v1/write"),
        flush_url: None,
        measure: data.join("tsdb"),
    })
}

async fn start_victoria(root: &Path) -> anyhow::Result<Target> {
    let port = free_port()?;
    let data = root.join("victoria");
    std::fs::create_dir_all(&data)?;
    let child = spawn(
        Command::new("victoria-metrics")
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!("-storageDataPath={}", data.join("vm").display())),
        &root.join("victoria.log"),
    )?;
    let base = format!("http://127.0.0.1:{port}");
    wait_http(&format!("{base}/health")).await?;
    Ok(Target {
        name: "victoria-metrics",
        child,
        write_url: format!("{base}/api/v1/write"),
        flush_url: Some(format!("{base}/internal/force_flush")),
        measure: data.join("vm"),
    })
}

/// xorshift64: a seeded, reproducible generator for the benchmarks' workloads (seed ≠ 0).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len() as u64) as usize]
    }
    /// A skewed draw in `0..n`: low values are much more likely, as with real clients, users
    /// and latencies (a few of each dominate).
    fn skewed(&mut self, n: u64) -> u64 {
        let u = self.below(1 << 16) as f64 / 65536.0;
        ((u * u * u) * n as f64) as u64
    }
}

/// True when `bin` is an executable on `PATH` (a peer to compare against).
fn which(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).exists()))
        .unwrap_or(false)
}

/// (utime + stime) seconds and RSS bytes of a process, from /proc.
fn proc_usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = 100.0; // USER_HZ on Linux
    let cpu = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    (cpu / tick, rss_kb * 1024)
}

fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

struct Figures {
    name: &'static str,
    samples_per_s: f64,
    cpu_s_per_m: f64,
    rss_per_series: f64,
    bytes_per_sample: f64,
    rejected: usize,
}

async fn drive(t: &Target, shards: &[Vec<Vec<u8>>], a: &IngestArgs) -> anyhow::Result<Figures> {
    let pid = t.child.id();
    let (cpu0, rss0) = proc_usage(pid);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.connections)
        .build()?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for shard in shards {
        let client = client.clone();
        let url = t.write_url.clone();
        let bodies = shard.clone();
        tasks.push(tokio::spawn(async move {
            let mut rejected = 0usize;
            for b in bodies {
                post_rw(&client, &url, b, &mut rejected).await?;
            }
            anyhow::Ok(rejected)
        }));
    }
    let mut rejected = 0;
    for t in tasks {
        rejected += t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let (cpu1, rss1) = proc_usage(pid);
    if let Some(f) = &t.flush_url {
        let r = client.post(f).send().await;
        if r.is_err() {
            client.get(f).send().await.context("flush")?;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let total = (a.series * a.samples) as f64;
    let disk = dir_size(&t.measure) as f64;
    Ok(Figures {
        name: t.name,
        samples_per_s: total / secs,
        cpu_s_per_m: (cpu1 - cpu0) / (total / 1e6),
        rss_per_series: rss1.saturating_sub(rss0.min(rss1)) as f64 / a.series as f64,
        bytes_per_sample: disk / total,
        rejected,
    })
}

async fn ingest(a: IngestArgs) -> anyhow::Result<()> {
    let root = tempfile_dir()?;
    println!(
        "workload: {} series × {} samples = {} samples ({:?} values), {} per request, {} connections",
        a.series,
        a.samples,
        a.series * a.samples,
        a.values,
        a.batch,
        a.connections
    );
    let t = Instant::now();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let shards = build_requests(&a, now);
    let bytes: usize = shards.iter().flatten().map(|b| b.len()).sum();
    println!(
        "encoded {} requests ({:.1} MiB snappy) in {:.1}s",
        shards.iter().map(|s| s.len()).sum::<usize>(),
        bytes as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64()
    );
    let mut results = Vec::new();
    {
        let target = start_heimdall(&root, "").await?;
        results.push(drive(&target, &shards, &a).await?);
    }
    if !a.no_peers && which("prometheus") {
        let target = start_prometheus(&root, "").await?;
        results.push(drive(&target, &shards, &a).await?);
    }
    if !a.no_peers && which("victoria-metrics") {
        let target = start_victoria(&root).await?;
        results.push(drive(&target, &shards, &a).await?);
    }
    println!(
        "\n{:<18} {:>14} {:>16} {:>16} {:>14} {:>9}",
        "target", "samples/s", "CPU s/M samples", "RSS B/series", "disk B/sample", "rejected"
    );
    for r in &results {
        println!(
            "{:<18} {:>14.0} {:>16.2} {:>16.0} {:>14.3} {:>9}",
            r.name,
            r.samples_per_s,
            r.cpu_s_per_m,
            r.rss_per_series,
            r.bytes_per_sample,
            r.rejected
        );
    }
    let ours = &results[0];
    for r in &results[1..] {
        println!(
            "heimdall vs {:<16} ingest {:.2}×  CPU {:.2}×  RSS/series {:.2}×  disk/sample {:.2}×  (>1 ingest = faster; <1 others = smaller)",
            r.name,
            ours.samples_per_s / r.samples_per_s,
            ours.cpu_s_per_m / r.cpu_s_per_m,
            ours.rss_per_series / r.rss_per_series,
            ours.bytes_per_sample / r.bytes_per_sample
        );
    }
    println!(
        "\nnotes: disk = heimdall blocks after flush; prometheus = WAL + head chunks (no block is cut within 2 h); \
         victoria-metrics = data dir after force_flush. RSS = growth during the run."
    );
    if a.keep {
        println!("data kept in {}", root.display());
    } else {
        let _ = std::fs::remove_dir_all(&root);
    }
    Ok(())
}

/// POSTs one snappy remote_write body; counts a non-2xx answer in `rejected` (printing the first).
async fn post_rw(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    rejected: &mut usize,
) -> anyhow::Result<()> {
    let r = client
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await?;
    if !r.status().is_success() {
        *rejected += 1;
        if *rejected == 1 {
            eprintln!(
                "{url}: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let p = std::env::temp_dir().join(format!("heimdall-bench-{}", std::process::id()));
    std::fs::create_dir_all(&p)?;
    Ok(p)
}
