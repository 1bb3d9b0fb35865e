//! The outage scenario: `heimdall agent` collects host metrics every second and tails a
//! log file written at a steady rate while the receiving `heimdall server` is killed (`kill -9`)
//! for two minutes and then comes back on the same address. Nothing is lost: every log line
//! arrives exactly once and in order, and the metric series has no gap wider than a scrape or two.
//!
//! `HEIMDALL_OUTAGE_SECS` shortens the outage for local runs (default 120, as the issue states).
mod support;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

const TENANT: &str = "outage";

fn loki_lines(h: &Heimdall, start_ns: i64) -> Vec<String> {
    let end = now_ms() * 1_000_000 + 60_000_000_000;
    let (s, v) = get_json(
        &format!(
            "{}/loki/api/v1/query_range?query=%7Bjob%3D%22varlogs%22%7D&start={start_ns}&end={end}&limit=5000&direction=forward",
            h.url
        ),
        Some(TENANT),
    );
    assert_eq!(s, 200, "{v}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().iter())
        .map(|e| e[1].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn nothing_is_lost_while_the_server_is_down() {
    let outage = Duration::from_secs(
        std::env::var("HEIMDALL_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(120),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut h = Heimdall::start(dir.path(), "");
    let app_log = dir.path().join("app.log");
    std::fs::write(&app_log, "").unwrap();
    let agent_port = free_port();
    let cfg = write_agent_config(
        dir.path(),
        agent_port,
        &format!(
            "scrape_interval: 1s\nremote_write:\n  url: {}/api/v1/push\n  tenant: {TENANT}\n  min_backoff: 200ms\n  max_backoff: 2s\nlogs:\n  enabled: true\n  pod_logs_glob: ''\n  files: [{}]\n  batch_max_wait: 200ms\n  poll_interval: 100ms\n  min_backoff: 200ms\n  max_backoff: 2s\n",
            h.url,
            app_log.display()
        ),
    );
    let log = dir.path().join("agent.log");
    let _agent = start_agent(dir.path(), &cfg, "agent.log");
    wait_ready(&format!("http://127.0.0.1:{agent_port}/ready"), &log);
    let started_ms = now_ms();

    // Steady load: 20 lines/s until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written, path) = (stop.clone(), written.clone(), app_log.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            let t0 = Instant::now();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                writeln!(f, "line {n:06} of the steady load").unwrap();
                n += 1;
                written.store(n, Ordering::Relaxed);
                let next = t0 + Duration::from_millis(50 * n);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })
    };

    std::thread::sleep(Duration::from_secs(8));
    assert!(
        !loki_lines(&h, started_ms * 1_000_000 - 60_000_000_000).is_empty(),
        "nothing arrived before the outage; agent log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    h.proc.kill9();
    let down_ms = now_ms();
    std::thread::sleep(outage);
    let up_ms = now_ms();
    h.restart_same_ports();
    std::thread::sleep(Duration::from_secs(8));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let n = written.load(Ordering::Relaxed) as usize;
    let want: Vec<String> = (0..n)
        .map(|i| format!("line {i:06} of the steady load"))
        .collect();

    // Every line exactly once, in file order.
    let got = eventually(Duration::from_secs(60), || {
        let l = loki_lines(&h, started_ms * 1_000_000 - 60_000_000_000);
        (l.len() >= n).then_some(l)
    })
    .unwrap_or_else(|| {
        let l = loki_lines(&h, started_ms * 1_000_000 - 60_000_000_000);
        panic!(
            "{} of {n} lines arrived; agent log:\n{}",
            l.len(),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    assert_eq!(got.len(), n, "duplicates");
    assert_eq!(got, want);

    // The host metric series spans the outage without holes: samples buffered during it were
    // delivered after it (a sample every second; allow a late tick).
    let window_s = (now_ms() - started_ms) / 1000 + 5;
    let samples = eventually(Duration::from_secs(30), || {
        let (s, v) = get_json(
            &format!(
                "{}/api/v1/query?query=node_time_seconds%5B{window_s}s%5D&time={}",
                h.url,
                now_ms() as f64 / 1000.0
            ),
            Some(TENANT),
        );
        assert_eq!(s, 200, "{v}");
        let ts: Vec<f64> = v["data"]["result"][0]["values"]
            .as_array()?
            .iter()
            .map(|p| p[0].as_f64().unwrap())
            .collect();
        // Wait until the agent's backlog reached the last seconds.
        (ts.last().copied()? * 1000.0 > (up_ms + 4000) as f64).then_some(ts)
    })
    .expect("node_time_seconds samples after the outage");
    let covered = samples
        .iter()
        .filter(|&&t| t * 1000.0 > down_ms as f64 && t * 1000.0 < up_ms as f64)
        .count() as u64;
    let max_gap = samples.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(
        covered + 3 >= outage.as_secs() && max_gap <= 2.5,
        "{covered} samples during a {}s outage, widest gap {max_gap}s",
        outage.as_secs()
    );

    // And the agent dropped nothing.
    let metrics = reqwest::blocking::get(format!("http://127.0.0.1:{agent_port}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    for line in metrics.lines() {
        if line.contains("dropped_batches_total{") {
            assert!(line.ends_with(" 0"), "{line}");
        }
    }
}
