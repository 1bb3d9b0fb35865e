//! `heimdall agent` against the real Debian peers: its `/metrics` must read like
//! `prometheus-node-exporter`'s (same family names, types and label names for every collector both
//! run; equal values where they are stable), and its remote_write must land in a real Prometheus,
//! including batches buffered while Prometheus was down and the agent was killed.
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use support::{
    client, eventually, free_port, have_peer, now_ms, start_agent, start_prometheus, wait_ready,
    write_agent_config, Proc,
};

/// node_exporter 1.5's upstream `--collector.filesystem.mount-points-exclude` default. Debian patches
/// its defaults (this one also hides /run, /mnt and /media; netdev hides `lo`); the agent keeps
/// upstream's, so the test passes upstream's values to the Debian binary to compare like with like.
const UPSTREAM_MOUNT_POINTS_EXCLUDE: &str =
    "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";

/// One parsed family of a text exposition.
#[derive(Default, Debug)]
struct Fam {
    help: String,
    typ: String,
    series: Vec<(BTreeMap<String, String>, f64)>,
}

impl Fam {
    fn label_names(&self) -> BTreeSet<String> {
        self.series
            .iter()
            .flat_map(|(l, _)| l.keys().cloned())
            .collect()
    }
    fn label_values(&self, name: &str) -> BTreeSet<String> {
        self.series
            .iter()
            .filter_map(|(l, _)| l.get(name).cloned())
            .collect()
    }
}

/// Parses the text exposition format 0.0.4 (enough of it for node_exporter's output).
fn parse_exposition(text: &str) -> BTreeMap<String, Fam> {
    let mut out: BTreeMap<String, Fam> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(name.into()).or_default().help = help.into();
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, typ) = rest.split_once(' ').unwrap();
            out.entry(name.into()).or_default().typ = typ.into();
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, labels, value) = match line.find('{') {
            Some(i) => {
                let close = line.rfind('}').unwrap();
                (
                    &line[..i],
                    parse_labels(&line[i + 1..close]),
                    &line[close + 1..],
                )
            }
            None => {
                let (n, v) = line.split_once(' ').unwrap();
                (n, BTreeMap::new(), v)
            }
        };
        let value: f64 = match value.split_whitespace().next().unwrap() {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap(),
        };
        out.entry(name.into())
            .or_default()
            .series
            .push((labels, value));
    }
    out
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|&c| c != '=').collect();
        let name = name.trim_start_matches(',').trim().to_string();
        if name.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "label {name} in {s}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(name, value);
    }
    out
}

fn fetch(url: &str) -> String {
    let resp = client().get(url).send().unwrap();
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.text().unwrap()
}

/// Families node_exporter derives from /sys/class/net (the `netclass` collector, not `netdev`),
/// which share the `node_network_` prefix.
fn is_netclass(name: &str) -> bool {
    name.starts_with("node_network_")
        && (!name.ends_with("_total") || name.contains("carrier_") && name.contains("changes"))
}

/// node_exporter families that the agent's collectors are meant to produce.
fn in_our_collectors(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "node_boot_time_seconds",
        "node_context_switches_total",
        "node_forks_total",
        "node_intr_total",
        "node_load1",
        "node_load5",
        "node_load15",
        "node_procs_running",
        "node_procs_blocked",
        "node_uname_info",
        "node_time_seconds",
        "node_time_zone_offset_seconds",
        "node_time_clocksource_available_info",
        "node_time_clocksource_current_info",
        "node_scrape_collector_success",
        "node_scrape_collector_duration_seconds",
    ];
    const PREFIXES: &[&str] = &[
        "node_cpu_",
        "node_memory_",
        "node_filesystem_",
        "node_disk_",
        "node_pressure_",
        "node_vmstat_",
        "node_filefd_",
        "node_sockstat_",
    ];
    EXACT.contains(&name)
        || PREFIXES.iter().any(|p| name.starts_with(p))
        || (name.starts_with("node_network_") && !is_netclass(name))
}

#[test]
fn agent_metrics_match_node_exporter() {
    if !have_peer("prometheus-node-exporter") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ne_port = free_port();
    let ne_log = dir.path().join("node_exporter.log");
    let _ne = Proc::spawn(
        "node_exporter",
        Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{ne_port}"))
            .arg(format!(
                "--collector.filesystem.mount-points-exclude={UPSTREAM_MOUNT_POINTS_EXCLUDE}"
            ))
            // Debian also defaults this to `^lo$`; upstream excludes no network device.
            .arg("--collector.netdev.device-exclude="),
        &ne_log,
    );
    let agent_port = free_port();
    let cfg = write_agent_config(dir.path(), agent_port, "scrape_interval: 1s\n");
    let _agent = start_agent(dir.path(), &cfg, "agent.log");
    wait_ready(&format!("http://127.0.0.1:{ne_port}/metrics"), &ne_log);
    wait_ready(
        &format!("http://127.0.0.1:{agent_port}/ready"),
        &dir.path().join("agent.log"),
    );

    let ours_text = fetch(&format!("http://127.0.0.1:{agent_port}/metrics"));
    let theirs = parse_exposition(&fetch(&format!("http://127.0.0.1:{ne_port}/metrics")));
    let ours = parse_exposition(&ours_text);

    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (name, fam) in ours.iter().filter(|(n, _)| n.starts_with("node_")) {
        let Some(ne) = theirs.get(name) else {
            rows.push((name.clone(), "only in agent".to_string(), fam.label_names()));
            continue;
        };
        let (a, b) = (fam.label_names(), ne.label_names());
        let mut status = "match".to_string();
        if a != b {
            status = "LABELS DIFFER".into();
            failures.push(format!("{name}: labels {a:?} vs node_exporter {b:?}"));
        }
        if fam.typ != ne.typ {
            status = "TYPE DIFFERS".into();
            failures.push(format!(
                "{name}: type {} vs node_exporter {}",
                fam.typ, ne.typ
            ));
        }
        if fam.help != ne.help {
            status = "HELP DIFFERS".into();
            failures.push(format!(
                "{name}: help {:?} vs node_exporter {:?}",
                fam.help, ne.help
            ));
        }
        rows.push((name.clone(), status, a));
    }
    for name in theirs.keys().filter(|n| in_our_collectors(n)) {
        if !ours.contains_key(name) {
            rows.push((name.clone(), "MISSING in agent".into(), BTreeSet::new()));
            failures.push(format!("{name}: node_exporter has it, the agent does not"));
        }
    }
    rows.sort();
    eprintln!("{:<58} {:<22} labels", "family", "vs node_exporter");
    for (name, status, labels) in &rows {
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        eprintln!("{name:<58} {status:<22} {}", labels.join(","));
    }
    let matched = rows.iter().filter(|r| r.1 == "match").count();
    eprintln!(
        "{matched} families match node_exporter; {} only in the agent",
        rows.iter().filter(|r| r.1 == "only in agent").count()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(matched >= 60, "only {matched} families compared");

    // Stable values must be equal.
    let single = |m: &BTreeMap<String, Fam>, n: &str| -> f64 {
        m.get(n).unwrap_or_else(|| panic!("{n} missing")).series[0].1
    };
    for n in [
        "node_memory_MemTotal_bytes",
        "node_memory_SwapTotal_bytes",
        "node_boot_time_seconds",
        "node_filefd_maximum",
    ] {
        assert_eq!(single(&ours, n), single(&theirs, n), "{n}");
    }
    for (n, label) in [
        ("node_cpu_seconds_total", "cpu"),
        ("node_cpu_seconds_total", "mode"),
        ("node_network_receive_bytes_total", "device"),
        ("node_disk_reads_completed_total", "device"),
        ("node_filesystem_size_bytes", "mountpoint"),
    ] {
        assert_eq!(
            ours[n].label_values(label),
            theirs[n].label_values(label),
            "{n} {label} values"
        );
    }
    let by_mountpoint = |m: &BTreeMap<String, Fam>| -> BTreeMap<String, f64> {
        m["node_filesystem_size_bytes"]
            .series
            .iter()
            .map(|(l, v)| (l["mountpoint"].clone(), *v))
            .collect()
    };
    assert_eq!(by_mountpoint(&ours), by_mountpoint(&theirs));
    assert_eq!(
        ours["node_uname_info"].series[0].0,
        theirs["node_uname_info"].series[0].0
    );
    assert_eq!(
        ours["node_disk_info"].series.len(),
        theirs["node_disk_info"].series.len()
    );
    // Counters read a moment apart: ours must be close to node_exporter's.
    let cpu_idle = |m: &BTreeMap<String, Fam>| -> f64 {
        m["node_cpu_seconds_total"]
            .series
            .iter()
            .filter(|(l, _)| l["mode"] == "idle")
            .map(|(_, v)| v)
            .sum()
    };
    let (a, b) = (cpu_idle(&ours), cpu_idle(&theirs));
    assert!((a - b).abs() < 120.0, "idle seconds {a} vs {b}");
    assert!(ours_text.contains("# TYPE node_cpu_seconds_total counter\n"));
}

fn prom_series(prom: &str, matcher: &str) -> Vec<serde_json::Value> {
    let (status, body) = support::get_json(
        &format!("{prom}/api/v1/series?match[]={matcher}&start=0"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().cloned().unwrap_or_default()
}

#[test]
fn agent_forwards_to_prometheus_durably() {
    if !have_peer("prometheus") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prom_port = free_port();
    let prom = format!("http://127.0.0.1:{prom_port}");
    let agent_port = free_port();
    let cfg = write_agent_config(
        dir.path(),
        agent_port,
        &format!(
            "scrape_interval: 1s\nremote_write:\n  url: {prom}/api/v1/write\n  min_backoff: 100ms\n  max_backoff: 1s\n  \
             external_labels:\n    cluster: test\n"
        ),
    );

    // Phase 1: Prometheus is not up yet; the agent buffers, then dies without a chance to flush.
    let t0 = now_ms() as f64 / 1000.0;
    let mut agent = start_agent(dir.path(), &cfg, "agent-1.log");
    wait_ready(
        &format!("http://127.0.0.1:{agent_port}/ready"),
        &dir.path().join("agent-1.log"),
    );
    std::thread::sleep(Duration::from_secs(3));
    agent.kill9();
    let t1 = now_ms() as f64 / 1000.0;

    // Phase 2: Prometheus comes up, the agent restarts and re-sends what was never acknowledged.
    let (_prom, _, _) = start_prometheus(
        dir.path(),
        prom_port,
        "global:\n  scrape_interval: 15s\n",
        true,
    );
    let _agent = start_agent(dir.path(), &cfg, "agent-2.log");

    let series = eventually(Duration::from_secs(60), || {
        let s = prom_series(&prom, "node_load1");
        (!s.is_empty()).then_some(s)
    })
    .unwrap_or_else(|| {
        panic!(
            "node_load1 never reached Prometheus; agent log:\n{}",
            std::fs::read_to_string(dir.path().join("agent-2.log")).unwrap_or_default()
        )
    });
    eprintln!("prometheus /api/v1/series?match[]=node_load1: {series:?}");
    let s = &series[0];
    assert_eq!(s["job"], "node");
    assert_eq!(s["cluster"], "test");
    assert!(s["instance"].as_str().is_some_and(|i| !i.is_empty()));
    assert!(!prom_series(&prom, "node_cpu_seconds_total").is_empty());
    assert!(!prom_series(&prom, "node_filesystem_size_bytes").is_empty());

    // Samples collected before the kill (timestamps in [t0, t1]) arrived too.
    let got = eventually(Duration::from_secs(30), || {
        let (status, body) = support::get_json(
            &format!("{prom}/api/v1/query_range?query=node_load1&start={t0}&end={t1}&step=1"),
            None,
        );
        assert_eq!(status, 200, "{body}");
        let n = body["data"]["result"][0]["values"]
            .as_array()
            .map_or(0, |v| v.len());
        (n > 0).then_some(n)
    });
    assert!(
        got.is_some(),
        "no samples from before the kill reached Prometheus; agent log:\n{}",
        std::fs::read_to_string(dir.path().join("agent-2.log")).unwrap_or_default()
    );
}

#[test]
fn up_collects_this_host_into_its_own_server() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let log = dir.path().join("up.log");
    let _up = Proc::spawn(
        "heimdall up",
        Command::new(env!("CARGO_BIN_EXE_heimdall"))
            .arg("up")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--http-listen")
            .arg(format!("127.0.0.1:{http}"))
            .arg("--otlp-grpc-listen")
            .arg("")
            .arg("--otlp-http-listen")
            .arg(""),
        &log,
    );
    let url = format!("http://127.0.0.1:{http}");
    wait_ready(&format!("{url}/ready"), &log);
    // The first collection runs at start-up; it must be queryable well within a minute.
    let series = eventually(Duration::from_secs(60), || {
        let (status, body) = support::get_json(
            &format!("{url}/api/v1/series?match[]=node_memory_MemTotal_bytes"),
            None,
        );
        let data = body["data"].as_array().cloned().unwrap_or_default();
        (status == 200 && !data.is_empty()).then_some(data)
    })
    .unwrap_or_else(|| {
        panic!(
            "no node_* series in `up` after 60 s; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    assert_eq!(series[0]["job"], "node");
    let banner = std::fs::read_to_string(&log).unwrap();
    assert!(banner.contains("Node agent (this host):"), "{banner}");
}
