//! Differential PromQL test: the Debian `prometheus` binary (2.42) and heimdall hold identical data and
//! must answer every query of `data/promql_corpus.txt` identically.
//!
//! Data: Prometheus scrapes `prometheus-node-exporter` and remote-writes the `job="node"` series to
//! heimdall (tenant from a bearer token, see `prometheus_peer.rs`); synthetic data sets (counters with
//! resets, gauges with gaps, explicit stale markers, classic histograms, several jobs/instances) are
//! remote-written to both directly. Prometheus forwards only `job="node"` so heimdall never sees a
//! synthetic sample twice.
//!
//! Window boundaries: Prometheus 2 selects `[t-range, t]`, Prometheus 3 (and heimdall) `(t-range, t]`.
//! Synthetic samples sit 3–13 ms after whole seconds, and every evaluation time is a whole second plus
//! an offset chosen away from both those phases and node_exporter's scrape phase, so no sample ever
//! lies on a window boundary and both rules select the same samples.
//!
//! Comparison rule: same `resultType`; matrices in the order returned (Prometheus sorts them by
//! labels); vectors sorted by label set on both sides unless the outermost function is `sort`,
//! `sort_desc` (the only order Prometheus defines for instant vectors); values equal within 1e-9
//! relative (or 1e-12 absolute near zero), `NaN == NaN`, `±Inf` equal; errors must be errors on both
//! sides with the same `errorType`. Queries whose semantics changed between 2.x and 3.x are listed in
//! the corpus' `@excluded` section with their reason and are not compared.

mod support;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;
use support::*;

const TOKEN: &str = "prom-secret";
const TENANT: &str = "prom";
const STEP_MS: i64 = 15_000;
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;
/// Evaluations whose Prometheus result was not empty (so the comparison was not vacuous).
static NON_EMPTY: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

struct Target {
    name: &'static str,
    base: String,
    auth: bool,
}

impl Target {
    fn get(&self, path: &str, params: &[(&str, String)]) -> (u16, Value) {
        let mut r = client().get(format!("{}{path}", self.base)).query(params);
        if self.auth {
            r = r.header("X-Scope-OrgID", TENANT).bearer_auth(TOKEN);
        }
        let resp = r.send().unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// The synthetic data sets, as (labels, samples) with owned strings.
type Owned = (Vec<(String, String)>, Vec<(i64, f64)>);

fn synthetic(start: i64) -> Vec<Owned> {
    let n = 233; // 58 minutes at 15 s
    let ts = |i: usize, phase: i64| start + i as i64 * STEP_MS + phase;
    let l = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    let mut out = Vec::new();
    let targets = [
        ("api", "a:80", 3i64),
        ("api", "b:80", 5),
        ("api", "c:80", 7),
        ("db", "a:90", 9),
        ("db", "b:90", 11),
    ];
    for (k, (job, inst, phase)) in targets.iter().enumerate() {
        let kf = k as f64;
        // Counters, by status code and method; the `b` instances reset twice.
        for (code, mul) in [("200", 1.0), ("500", 0.07)] {
            for method in ["get", "post"] {
                let mut v = 10.0 * kf;
                let mut s = Vec::new();
                for i in 0..n {
                    if inst.starts_with('b') && (i == 100 || i == 120 || i == 180) {
                        v = (i % 5) as f64;
                    } else {
                        v += mul * (((i * 7 + k * 3) % 11) as f64 + 0.25);
                    }
                    s.push((ts(i, *phase), v));
                }
                out.push((
                    l(&[
                        ("__name__", "syn_requests_total"),
                        ("job", job),
                        ("instance", inst),
                        ("code", code),
                        ("method", method),
                    ]),
                    s,
                ));
            }
        }
        // Gauge with a 10-minute gap on instance c.
        let s = (0..n)
            .filter(|i| !(inst.starts_with('c') && (110..150).contains(i)))
            .map(|i| {
                let x = i as f64 / 9.0 + kf;
                (ts(i, *phase), 50.0 * x.sin() + 7.0 * kf - 20.0)
            })
            .collect();
        out.push((
            l(&[
                ("__name__", "syn_temperature"),
                ("job", job),
                ("instance", inst),
            ]),
            s,
        ));
        // Gauge that goes stale (explicit marker) at 30 min and comes back at 40 min.
        let mut s = Vec::new();
        for i in 0..n {
            if i == 120 {
                s.push((ts(i, *phase), f64::from_bits(STALE_NAN)));
            } else if !(120..160).contains(&i) {
                s.push((ts(i, *phase), (i % 13) as f64 * 1.5 + kf));
            }
        }
        out.push((
            l(&[
                ("__name__", "syn_queue_length"),
                ("job", job),
                ("instance", inst),
            ]),
            s,
        ));
        // A series that ends for good (stale marker) at 50 min.
        let mut s: Vec<(i64, f64)> = (0..200).map(|i| (ts(i, *phase), kf + 1.0)).collect();
        s.push((ts(200, *phase), f64::from_bits(STALE_NAN)));
        out.push((
            l(&[("__name__", "syn_up"), ("job", job), ("instance", inst)]),
            s,
        ));
        // Info-style series for joins.
        let version = if k % 2 == 0 { "1.2.3" } else { "2.0.0" };
        out.push((
            l(&[
                ("__name__", "syn_build_info"),
                ("job", job),
                ("instance", inst),
                ("version", version),
                ("path", "/srv/app/bin"),
            ]),
            (0..n).map(|i| (ts(i, *phase), 1.0)).collect(),
        ));
        // Classic histogram.
        let les = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"];
        let mut counts = vec![0.0f64; les.len()];
        let mut sum = 0.0;
        let mut bucket_series: Vec<Vec<(i64, f64)>> = vec![Vec::new(); les.len()];
        let mut count_s = Vec::new();
        let mut sum_s = Vec::new();
        for i in 0..n {
            // Observations this interval per bucket (non-cumulative), then cumulated.
            let mut cum = 0.0;
            for (b, c) in counts.iter_mut().enumerate() {
                let add = ((i * (b + 1) + k * 5) % 7) as f64 + if b == 3 { 4.0 } else { 0.0 };
                let add = if b == les.len() - 1 { add * 0.1 } else { add };
                cum += add;
                *c += cum;
            }
            sum += ((i + k) % 9) as f64 * 0.37 + 1.0;
            for (b, c) in counts.iter().enumerate() {
                bucket_series[b].push((ts(i, *phase), *c));
            }
            count_s.push((ts(i, *phase), counts[les.len() - 1]));
            sum_s.push((ts(i, *phase), sum));
        }
        for (b, le) in les.iter().enumerate() {
            out.push((
                l(&[
                    ("__name__", "syn_latency_seconds_bucket"),
                    ("job", job),
                    ("instance", inst),
                    ("le", le),
                ]),
                bucket_series[b].clone(),
            ));
        }
        out.push((
            l(&[
                ("__name__", "syn_latency_seconds_count"),
                ("job", job),
                ("instance", inst),
            ]),
            count_s,
        ));
        out.push((
            l(&[
                ("__name__", "syn_latency_seconds_sum"),
                ("job", job),
                ("instance", inst),
            ]),
            sum_s,
        ));
    }
    // Special values.
    out.push((
        l(&[("__name__", "syn_special"), ("kind", "nan")]),
        (0..n).map(|i| (ts(i, 13), f64::NAN)).collect(),
    ));
    out.push((
        l(&[("__name__", "syn_special"), ("kind", "inf")]),
        (0..n).map(|i| (ts(i, 13), f64::INFINITY)).collect(),
    ));
    out.push((
        l(&[("__name__", "syn_special"), ("kind", "neginf")]),
        (0..n).map(|i| (ts(i, 13), f64::NEG_INFINITY)).collect(),
    ));
    out.push((
        l(&[("__name__", "syn_special"), ("kind", "zero")]),
        (0..n).map(|i| (ts(i, 13), 0.0)).collect(),
    ));
    out
}

fn push_all(data: &[Owned], heimdall: &str, prom: &str) {
    for chunk in data.chunks(20) {
        let series: Vec<TestSeries> = chunk
            .iter()
            .map(|(l, s)| {
                (
                    l.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect(),
                    s.clone(),
                )
            })
            .collect();
        let (s, b) = push_auth(heimdall, Some(TENANT), Some(TOKEN), rw_body(&series));
        assert!(s < 300, "heimdall push: {s} {b}");
        let r = client()
            .post(format!("{prom}/api/v1/write"))
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(rw_body(&series))
            .send()
            .unwrap();
        let s = r.status().as_u16();
        assert!(
            s < 300,
            "prometheus push: {s} {}",
            r.text().unwrap_or_default()
        );
    }
}

/// The corpus: `@instant`, `@range` and `@excluded` sections; `#` starts a comment line. Excluded
/// lines read `<query> ;; <reason>`.
struct Corpus {
    instant: Vec<String>,
    range: Vec<String>,
    excluded: Vec<(String, String)>,
}

fn corpus() -> Corpus {
    let text = include_str!("data/promql_corpus.txt");
    let mut c = Corpus {
        instant: vec![],
        range: vec![],
        excluded: vec![],
    };
    let mut section = "";
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('@') {
            section = match s {
                "instant" => "instant",
                "range" => "range",
                "excluded" => "excluded",
                other => panic!("unknown corpus section @{other}"),
            };
            continue;
        }
        match section {
            "instant" => c.instant.push(line.to_string()),
            "range" => c.range.push(line.to_string()),
            "excluded" => {
                let (q, why) = line
                    .split_once(";;")
                    .unwrap_or_else(|| panic!("excluded query without a reason: {line}"));
                c.excluded
                    .push((q.trim().to_string(), why.trim().to_string()));
            }
            _ => panic!("query outside a section: {line}"),
        }
    }
    c
}

fn parse_value(v: &Value) -> f64 {
    match v.as_str() {
        Some("NaN") => f64::NAN,
        Some("+Inf") => f64::INFINITY,
        Some("-Inf") => f64::NEG_INFINITY,
        Some(s) => s.parse().unwrap_or(f64::NAN),
        None => f64::NAN,
    }
}

fn float_eq(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    let d = (a - b).abs();
    d <= 1e-12 || d <= 1e-9 * a.abs().max(b.abs())
}

/// A `[ts, "value"]` pair equal on both sides; bit-identical values must also be formatted
/// identically (Prometheus formats with Go's `strconv.FormatFloat(v, 'f', -1, 64)`).
fn point_eq(a: &Value, b: &Value) -> bool {
    let (x, y) = (parse_value(&a[1]), parse_value(&b[1]));
    let same_text = x.to_bits() != y.to_bits() || a[1] == b[1];
    a[0].as_f64() == b[0].as_f64() && float_eq(x, y) && same_text
}

fn sorted_by_metric(v: &Value) -> Vec<Value> {
    let mut items = v.as_array().cloned().unwrap_or_default();
    items.sort_by_key(|i| i["metric"].to_string());
    items
}

/// Compares two `data` objects; `Err` describes the first difference.
fn compare(query: &str, ours: &Value, theirs: &Value) -> Result<(), String> {
    let rt = theirs["resultType"].as_str().unwrap_or("");
    if ours["resultType"] != theirs["resultType"] {
        return Err(format!(
            "resultType {} vs {}",
            ours["resultType"], theirs["resultType"]
        ));
    }
    let (a, b) = (&ours["result"], &theirs["result"]);
    match rt {
        "scalar" | "string" => {
            let ok = if rt == "scalar" {
                point_eq(a, b)
            } else {
                a == b
            };
            ok.then_some(()).ok_or_else(|| format!("{a} vs {b}"))
        }
        "vector" | "matrix" => {
            let ordered = rt == "matrix" || {
                let q = query.trim_start();
                q.starts_with("sort(") || q.starts_with("sort_desc(")
            };
            let (a, b) = if ordered {
                (
                    a.as_array().cloned().unwrap_or_default(),
                    b.as_array().cloned().unwrap_or_default(),
                )
            } else {
                (sorted_by_metric(a), sorted_by_metric(b))
            };
            if a.len() != b.len() {
                let la: Vec<String> = a.iter().map(|x| x["metric"].to_string()).collect();
                let lb: Vec<String> = b.iter().map(|x| x["metric"].to_string()).collect();
                return Err(format!(
                    "{} vs {} series: heimdall {la:?} prometheus {lb:?}",
                    a.len(),
                    b.len()
                ));
            }
            for (x, y) in a.iter().zip(&b) {
                if x["metric"] != y["metric"] {
                    return Err(format!("labels {} vs {}", x["metric"], y["metric"]));
                }
                if rt == "vector" {
                    if !point_eq(&x["value"], &y["value"]) {
                        return Err(format!("{}: {} vs {}", x["metric"], x["value"], y["value"]));
                    }
                } else {
                    let (pa, pb) = (
                        x["values"].as_array().cloned().unwrap_or_default(),
                        y["values"].as_array().cloned().unwrap_or_default(),
                    );
                    let same =
                        pa.len() == pb.len() && pa.iter().zip(&pb).all(|(p, q)| point_eq(p, q));
                    if !same {
                        let first = pa
                            .iter()
                            .zip(&pb)
                            .find(|(p, q)| !point_eq(p, q))
                            .map(|(p, q)| format!("first diff {p} vs {q}"))
                            .unwrap_or_default();
                        return Err(format!(
                            "{}: {} vs {} points; {first}",
                            x["metric"],
                            pa.len(),
                            pb.len()
                        ));
                    }
                }
            }
            Ok(())
        }
        other => Err(format!("unexpected resultType {other}")),
    }
}

fn run_one(
    ours: &Target,
    theirs: &Target,
    path: &str,
    query: &str,
    params: &[(&str, String)],
) -> Result<(), String> {
    let mut p = vec![("query", query.to_string())];
    p.extend(params.iter().cloned());
    let (sa, a) = ours.get(path, &p);
    let (sb, b) = theirs.get(path, &p);
    let r = &b["data"]["result"];
    if r.as_array().is_some_and(|v| !v.is_empty()) || r.is_string() || r[1].is_string() {
        NON_EMPTY.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    if sa != sb {
        return Err(format!(
            "status {sa} vs {sb}: {} / {}",
            a.to_string().chars().take(300).collect::<String>(),
            b.to_string().chars().take(300).collect::<String>()
        ));
    }
    if b["status"] != "success" {
        return if a["errorType"] == b["errorType"] {
            Ok(())
        } else {
            Err(format!(
                "errorType {} vs {}",
                a["errorType"], b["errorType"]
            ))
        };
    }
    compare(query, &a["data"], &b["data"])
}

fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

fn is_live(q: &str) -> bool {
    q.contains("node_") || q.contains("scrape_") || q.contains("up{") || q.starts_with("up")
}

/// Live scrape timestamps jitter, so one of them can land exactly on a window boundary, where
/// Prometheus 2 (closed windows) and 3 (left-open) legitimately differ. A live query that differs
/// is evaluated once more with every timestamp moved by 333 ms; synthetic data never needs this.
/// `eval` takes the shift in ms.
fn retry_live_off_boundary(
    q: &str,
    eval: impl Fn(i64) -> Result<(), String>,
) -> Result<(), String> {
    match eval(0) {
        Err(first) if is_live(q) => eval(333).map_err(|_| first),
        r => r,
    }
}

/// Circular distance between two millisecond phases.
fn phase_dist(a: i64, b: i64) -> i64 {
    let d = (a - b).rem_euclid(1000);
    d.min(1000 - d)
}

#[test]
fn promql_matches_prometheus() {
    if !have_peer("prometheus") || !have_peer("prometheus-node-exporter") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let h = Heimdall::start_with_token(dir.path(), TENANT, TOKEN);
    let (_node, node_port) = start_node_exporter(dir.path());
    let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1m\n\
             scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{node_port}']\n\
             remote_write:\n  - url: {}/api/v1/write\n    authorization:\n      credentials: {TOKEN}\n    \
             write_relabel_configs:\n      - source_labels: [job]\n        regex: node\n        action: keep\n    \
             queue_config:\n      batch_send_deadline: 1s\n      max_shards: 2\n",
            h.url
    );
    let (_prom, prom_url, prom_log) = start_prometheus(dir.path(), free_port(), &config, true);

    let ours = Target {
        name: "heimdall",
        base: h.url.clone(),
        auth: true,
    };
    let theirs = Target {
        name: "prometheus",
        base: prom_url.clone(),
        auth: false,
    };

    // Synthetic data: 60 minutes back from the current minute, ending two minutes ago. Evaluation
    // windows (at most 20 minutes) start after the first sample: 3.x changed counter extrapolation
    // for series that start inside the window (see the corpus' exclusions).
    let start = now_ms() / 60_000 * 60_000 - 60 * 60_000;
    push_all(&synthetic(start), &h.url, &prom_url);
    grafana_save_and_test(&ours);
    error_shapes(&ours, &theirs);

    // Let Prometheus scrape for a while, then find its scrape phase.
    std::thread::sleep(Duration::from_secs(40));
    let (_, raw) = theirs.get("/api/v1/query", &[("query", "node_load1[10s]".to_string())]);
    let scrape_phase = raw["data"]["result"][0]["values"][0][0]
        .as_f64()
        .map(|t| ((t * 1000.0).round() as i64).rem_euclid(1000))
        .expect("node_load1 scraped");
    let offset = [250, 500, 750]
        .into_iter()
        .max_by_key(|o| phase_dist(*o, scrape_phase))
        .unwrap();
    // Live (node_exporter) evaluation window: must have reached heimdall through remote write.
    let live_end = (now_ms() - 5_000) / 1000 * 1000 + offset;
    let converged = eventually(Duration::from_secs(60), || {
        let q = [
            ("query", "count_over_time(up[30s])".to_string()),
            ("time", secs(live_end)),
        ];
        let (_, a) = ours.get("/api/v1/query", &q);
        let (_, b) = theirs.get("/api/v1/query", &q);
        (a["data"] == b["data"] && b["data"]["result"][0].is_object()).then_some(())
    });
    assert!(
        converged.is_some(),
        "heimdall did not receive node_exporter data\n{}",
        std::fs::read_to_string(&prom_log).unwrap_or_default()
    );

    let c = corpus();
    assert!(
        c.instant.len() + c.range.len() >= 300,
        "corpus holds {} queries",
        c.instant.len() + c.range.len()
    );
    let syn_times: Vec<i64> = [22, 29, 35, 41, 48, 57]
        .iter()
        .map(|m| start + m * 60_000 + offset)
        .collect();
    let live_times = [live_end, live_end - 7_000, live_end - 20_000];
    let syn_ranges = [
        (
            start + 21 * 60_000 + offset,
            start + 57 * 60_000 + offset,
            "15",
        ),
        (
            start + 22 * 60_000 + offset,
            start + 57 * 60_000 + offset,
            "60",
        ),
        (
            start + 25 * 60_000 + offset,
            start + 55 * 60_000 + offset,
            "131",
        ),
    ];
    let live_ranges = [
        (live_end - 30_000, live_end, "1"),
        (live_end - 30_000, live_end, "7"),
    ];

    let mut compared = 0;
    let mut equal = 0;
    let mut failures: Vec<String> = Vec::new();
    let mut record = |q: &str, what: String, r: Result<(), String>| {
        compared += 1;
        match r {
            Ok(()) => equal += 1,
            Err(e) => failures.push(format!("{q}  [{what}]\n    {e}")),
        }
    };
    for q in c.instant.iter().chain(&c.range) {
        let times: &[i64] = if is_live(q) { &live_times } else { &syn_times };
        for t in times {
            let eval = |shift: i64| {
                run_one(
                    &ours,
                    &theirs,
                    "/api/v1/query",
                    q,
                    &[("time", secs(*t + shift))],
                )
            };
            let r = retry_live_off_boundary(q, eval);
            record(q, format!("instant @{}", secs(*t)), r);
        }
    }
    for q in &c.range {
        let ranges: &[(i64, i64, &str)] = if is_live(q) {
            &live_ranges
        } else {
            &syn_ranges
        };
        for (s, e, step) in ranges {
            let eval = |shift: i64| {
                run_one(
                    &ours,
                    &theirs,
                    "/api/v1/query_range",
                    q,
                    &[
                        ("start", secs(*s + shift)),
                        ("end", secs(*e + shift)),
                        ("step", step.to_string()),
                    ],
                )
            };
            let r = retry_live_off_boundary(q, eval);
            record(
                q,
                format!("range {}..{} step {step}", secs(*s), secs(*e)),
                r,
            );
        }
    }
    // Failing queries grouped by query.
    let failing_queries: std::collections::BTreeSet<&str> = failures
        .iter()
        .map(|f| f.split("  [").next().unwrap_or(""))
        .collect();
    let mut summary = String::new();
    writeln!(
        summary,
        "promql differential vs {}: {} queries ({} instant-only, {} range), {} excluded; {compared} evaluations compared ({} with a non-empty result), {equal} equal, {} failed ({} queries)",
        theirs.name,
        c.instant.len() + c.range.len(),
        c.instant.len(),
        c.range.len(),
        c.excluded.len(),
        NON_EMPTY.load(std::sync::atomic::Ordering::Relaxed),
        failures.len(),
        failing_queries.len()
    )
    .unwrap();
    for f in &failures {
        writeln!(summary, "  MISMATCH {f}").unwrap();
    }
    println!("{summary}");
    if std::env::var("PROMQL_DIFF_SUMMARY").is_ok() {
        std::fs::write(std::env::var("PROMQL_DIFF_SUMMARY").unwrap(), &summary).unwrap();
    }
    assert!(
        failures.is_empty(),
        "{} mismatches vs {}",
        failures.len(),
        ours.name
    );
}

/// Grafana's "Save & test": an instant `1+1` at time=4 through POST form, then buildinfo.
fn grafana_save_and_test(ours: &Target) {
    let (s, v) = post_form_auth(
        &format!("{}/prometheus/api/v1/query", ours.base),
        "query=1%2B1&time=4",
        Some(TENANT),
        Some(TOKEN),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        serde_json::json!({"status":"success","data":{"resultType":"scalar","result":[4,"2"]}})
    );
    let (s, v) = get_json_auth(
        &format!("{}/api/v1/status/buildinfo", ours.base),
        Some(TENANT),
        Some(TOKEN),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "success", "{v}");
}

/// (path, parameters, whether the message must equal Prometheus').
type ErrorCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, bool);

/// Query-API error shapes: status code and errorType as Prometheus, and its message where the
/// message does not carry a parser position.
fn error_shapes(ours: &Target, theirs: &Target) {
    let cases: Vec<ErrorCase> = vec![
        (
            "/api/v1/query_range",
            vec![
                ("query", "up"),
                ("start", "10"),
                ("end", "20"),
                ("step", "0"),
            ],
            true,
        ),
        (
            "/api/v1/query_range",
            vec![
                ("query", "up"),
                ("start", "10"),
                ("end", "20"),
                ("step", "-5"),
            ],
            true,
        ),
        (
            "/api/v1/query_range",
            vec![
                ("query", "up"),
                ("start", "20"),
                ("end", "10"),
                ("step", "1"),
            ],
            true,
        ),
        (
            "/api/v1/query_range",
            vec![
                ("query", "up"),
                ("start", "0"),
                ("end", "11001"),
                ("step", "1"),
            ],
            true,
        ),
        (
            "/api/v1/query_range",
            vec![
                ("query", "up"),
                ("start", "10"),
                ("end", "20"),
                ("step", "abc"),
            ],
            false,
        ),
        (
            "/api/v1/query_range",
            vec![
                ("query", "up"),
                ("start", "abc"),
                ("end", "20"),
                ("step", "1"),
            ],
            false,
        ),
        ("/api/v1/query", vec![("query", "sum(up")], false),
        ("/api/v1/query", vec![("query", "up{")], false),
        ("/api/v1/query", vec![("query", "rate(up)")], false),
        (
            "/api/v1/query",
            vec![("query", "up"), ("time", "abc")],
            false,
        ),
        (
            "/api/v1/query_range",
            vec![
                ("query", "up["),
                ("start", "10"),
                ("end", "20"),
                ("step", "1"),
            ],
            false,
        ),
    ];
    for (path, params, same_message) in cases {
        let p: Vec<(&str, String)> = params.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let (sa, a) = ours.get(path, &p);
        let (sb, b) = theirs.get(path, &p);
        assert_eq!(sa, sb, "{path} {params:?}: status\n{a}\n{b}");
        assert_eq!(sa, 400, "{path} {params:?}: {a}");
        assert_eq!(
            a["errorType"], b["errorType"],
            "{path} {params:?}\n{a}\n{b}"
        );
        assert_eq!(a["status"], "error");
        if same_message {
            assert_eq!(a["error"], b["error"], "{path} {params:?}");
        }
    }
}
