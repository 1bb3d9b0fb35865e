//! `heimdall agent` tails Kubernetes pod logs (CRI format, with partial lines) and a plain file and
//! ships them to a real `heimdall server` over the Loki push API: each namespace is its own tenant,
//! lines are joined and labelled as Alloy/Promtail do, and nothing crosses tenants.
mod support;

use std::io::Write;
use std::time::Duration;

use support::*;

fn query(h: &Heimdall, q: &str, tenant: &str) -> serde_json::Value {
    let end = now_ms() * 1_000_000 + 60_000_000_000;
    let start = end - 86_400_000_000_000;
    let enc: String = q
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let (s, v) = get_json(
        &format!(
            "{}/loki/api/v1/query_range?query={enc}&start={start}&end={end}&limit=1000&direction=forward",
            h.url
        ),
        Some(tenant),
    );
    assert_eq!(s, 200, "{v}");
    v
}

fn lines(v: &serde_json::Value) -> Vec<String> {
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().iter())
        .map(|e| e[1].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn agent_ships_pod_and_file_logs_per_namespace_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let h = Heimdall::start(dir.path(), "");
    let pods = dir.path().join("pods");
    let shop = pods.join("shop_cart-7d9f_0b1c/cart");
    let infra = pods.join("infra_dns-1_aa22/coredns");
    std::fs::create_dir_all(&shop).unwrap();
    std::fs::create_dir_all(&infra).unwrap();
    // Entry times a few minutes ago (CRI timestamps are RFC 3339 with nanoseconds).
    let base = (now_ms() / 1000 - 600) * 1_000_000_000;
    let at = |ns: i64| {
        chrono::DateTime::from_timestamp(ns / 1_000_000_000, (ns % 1_000_000_000) as u32)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    };
    std::fs::write(
        shop.join("0.log"),
        format!(
            "{} stdout F order 1 placed\n{} stderr P payment failed: \n{} stderr F card declined\n",
            at(base + 1),
            at(base + 1_000_000_000),
            at(base + 1_500_000_000)
        ),
    )
    .unwrap();
    std::fs::write(
        infra.join("0.log"),
        format!(
            "{} stdout F dns query example.org\n",
            at(base + 2_000_000_000)
        ),
    )
    .unwrap();
    let syslog = dir.path().join("syslog");
    std::fs::write(&syslog, "Nov 25 10:00:03 host cron[1]: job done\n").unwrap();
    let agent_port = free_port();
    let cfg = write_agent_config(
        dir.path(),
        agent_port,
        &format!(
            "remote_write:\n  url: {}/api/v1/push\n  tenant: hosts\nlogs:\n  enabled: true\n  pod_logs_glob: {}/*/*/*.log\n  files: [{}]\n  node_name: node-1\n  batch_max_wait: 200ms\n  poll_interval: 100ms\n  rescan_interval: 500ms\n",
            h.url,
            pods.display(),
            syslog.display()
        ),
    );
    let log = dir.path().join("agent.log");
    let _agent = start_agent(dir.path(), &cfg, "agent.log");
    wait_ready(&format!("http://127.0.0.1:{agent_port}/ready"), &log);

    let shop_lines = eventually(Duration::from_secs(20), || {
        let l = lines(&query(&h, r#"{namespace="shop"}"#, "shop"));
        (l.len() == 2).then_some(l)
    })
    .unwrap_or_else(|| {
        panic!(
            "shop logs did not arrive; agent log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    let mut sorted = shop_lines.clone();
    sorted.sort();
    assert_eq!(sorted, ["order 1 placed", "payment failed: card declined"]);
    let v = query(&h, r#"{namespace="shop", stream="stderr"}"#, "shop");
    let s = &v["data"]["result"][0];
    assert_eq!(s["stream"]["pod"], "cart-7d9f", "{s}");
    assert_eq!(s["stream"]["container"], "cart", "{s}");
    assert_eq!(s["stream"]["node"], "node-1", "{s}");
    // The P line's text with the F line's time.
    assert_eq!(s["values"][0][0], (base + 1_500_000_000).to_string(), "{s}");

    let infra_lines = eventually(Duration::from_secs(20), || {
        let l = lines(&query(&h, r#"{namespace="infra"}"#, "infra"));
        (!l.is_empty()).then_some(l)
    })
    .unwrap();
    assert_eq!(infra_lines, ["dns query example.org"]);
    let host_lines = eventually(Duration::from_secs(20), || {
        let l = lines(&query(&h, r#"{job="varlogs"}"#, "hosts"));
        (!l.is_empty()).then_some(l)
    })
    .unwrap();
    assert_eq!(host_lines, ["Nov 25 10:00:03 host cron[1]: job done"]);
    // No tenant sees another namespace's lines.
    assert!(lines(&query(&h, r#"{namespace=~".+"}"#, "infra"))
        .iter()
        .all(|l| l == "dns query example.org"));

    // Lines appended later arrive too.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(shop.join("0.log"))
        .unwrap();
    writeln!(f, "{} stdout F order 2 placed", at(base + 5_000_000_000)).unwrap();
    // A JSON line: its level becomes the `level` label, its trace id structured metadata.
    let json =
        r#"{"level":"ERROR","msg":"refund failed","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}"#;
    writeln!(f, "{} stdout F {json}", at(base + 6_000_000_000)).unwrap();
    let n = eventually(Duration::from_secs(20), || {
        let l = lines(&query(&h, r#"{namespace="shop"}"#, "shop"));
        (l.len() == 4).then_some(l.len())
    });
    assert_eq!(n, Some(4));
    let v = query(
        &h,
        r#"{namespace="shop", level="error"} | trace_id="4bf92f3577b34da6a3ce929d0e0e4736""#,
        "shop",
    );
    assert_eq!(lines(&v), [json], "{v}");
    assert_eq!(v["data"]["result"][0]["stream"]["app"], "cart-7d9f", "{v}");
}
