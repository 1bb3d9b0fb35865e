//! Writes the seed corpus of every fuzz target into `fuzz/seeds/<target>/` from our own types:
//! remote_write 1.0/2.0 bodies (raw and Snappy), OTLP/HTTP bodies (the hand-written
//! `seeds/otlp.json` and its protobuf form, each plain and gzip) and a few PromQL queries.
//!
//! Run without the fuzz flags: `cargo run --manifest-path fuzz/Cargo.toml --bin gen_seeds`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use common::config::MetricsConfig;
use common::limits::Limits;
use metrics::ingest::remote_write::{decode, CONTENT_TYPE_V1, CONTENT_TYPE_V2};
use prost::Message;
use proto::{prometheus as v1, prometheus_v2 as v2};

const TS: i64 = 1_700_000_000_000;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");

    let rw = root.join("remote_write");
    let v1_raw = v1_request().encode_to_vec();
    let v2_raw = v2_request().encode_to_vec();
    write(&rw, "v1.pb", &v1_raw);
    write(&rw, "v1.snappy", &snappy(&v1_raw));
    write(&rw, "v2.pb", &v2_raw);
    write(&rw, "v2.snappy", &snappy(&v2_raw));
    // Seeds that pass validation lead the fuzzer past it.
    for (ct, body) in [(CONTENT_TYPE_V1, &v1_raw), (CONTENT_TYPE_V2, &v2_raw)] {
        let d = decode(
            &snappy(body),
            Some(ct),
            Some("snappy"),
            &Limits::default(),
            TS,
        )
        .unwrap_or_else(|e| panic!("{ct} seed must be valid: {e}"));
        assert_eq!(d.batch.series.len(), 2);
    }

    // otlp_http: first byte is the mode (bit 0 JSON, bit 1 gzip).
    let otlp = root.join("otlp_http");
    let json = fs::read(root.join("otlp.json")).expect("read seeds/otlp.json");
    let req = metrics::ingest::otlp::decode_request(
        &json,
        Some("application/json"),
        None,
        &Limits::default(),
    )
    .expect("seeds/otlp.json is a valid OTLP/JSON request");
    assert!(!req.resource_metrics.is_empty());
    let pb = req.encode_to_vec();
    write(&otlp, "pb", &prefixed(0, &pb));
    write(&otlp, "json", &prefixed(1, &json));
    write(&otlp, "pb.gz", &prefixed(2, &gzip(&pb)));
    write(&otlp, "json.gz", &prefixed(3, &gzip(&json)));
    let d = metrics::ingest::otlp::decode_http(
        &json,
        Some("application/json"),
        None,
        &Limits::default(),
        &MetricsConfig::default(),
    )
    .expect("seeds/otlp.json translates");
    println!(
        "otlp seed: {} series, {} rejected points {:?}",
        d.batch.series.len(),
        d.rejected,
        d.errors
    );

    let promql = root.join("promql_parse");
    for (i, q) in [
        r#"sum by (job) (rate(http_requests_total{job=~"api|web", code!="500"}[5m] offset 1m))"#,
        "histogram_quantile(0.9, sum(rate(latency_bucket[1m])) by (le)) > bool 0.5",
        r#"topk(3, avg_over_time(up[1h:5m] @ 1700000000)) * on(instance) group_left label_replace(vector(1), "a", "$1", "b", "(.*)")"#,
        r#"-{__name__="x"} / ignoring(a) (y ^ 3) unless count_values("v", y)"#,
    ]
    .iter()
    .enumerate()
    {
        if let Err(e) = metrics::promql::parse(q) {
            panic!("seed query must parse: {q}: {e}");
        }
        write(&promql, &format!("q{i}"), q.as_bytes());
    }
}

fn v1_request() -> v1::WriteRequest {
    let label = |n: &str, v: &str| v1::Label {
        name: n.into(),
        value: v.into(),
    };
    v1::WriteRequest {
        timeseries: vec![
            v1::TimeSeries {
                labels: vec![
                    label("__name__", "http_requests_total"),
                    label("job", "api"),
                ],
                samples: vec![
                    v1::Sample {
                        value: 1.0,
                        timestamp: TS,
                    },
                    v1::Sample {
                        value: 2.0,
                        timestamp: TS + 15_000,
                    },
                ],
                exemplars: vec![v1::Exemplar {
                    labels: vec![label("trace_id", "abc123")],
                    value: 1.0,
                    timestamp: TS,
                }],
                histograms: vec![],
            },
            v1::TimeSeries {
                labels: vec![
                    label("__name__", "latency_seconds"),
                    label("instance", "a:9090"),
                ],
                samples: vec![],
                exemplars: vec![],
                histograms: vec![v1::Histogram {
                    count: Some(v1::histogram::Count::CountInt(5)),
                    sum: 2.5,
                    schema: 1,
                    zero_threshold: 1e-128,
                    zero_count: Some(v1::histogram::ZeroCount::ZeroCountInt(1)),
                    positive_spans: vec![v1::BucketSpan {
                        offset: 0,
                        length: 2,
                    }],
                    positive_deltas: vec![2, 0],
                    reset_hint: v1::histogram::ResetHint::No as i32,
                    timestamp: TS,
                    ..Default::default()
                }],
            },
        ],
        metadata: vec![v1::MetricMetadata {
            r#type: v1::metric_metadata::MetricType::Counter as i32,
            metric_family_name: "http_requests_total".into(),
            help: "Requests.".into(),
            unit: String::new(),
        }],
    }
}

fn v2_request() -> v2::Request {
    v2::Request {
        // 0 "", 1 __name__, 2 http_requests_total, 3 job, 4 api, 5 help, 6 trace_id, 7 abc,
        // 8 latency_seconds
        symbols: [
            "",
            "__name__",
            "http_requests_total",
            "job",
            "api",
            "Requests.",
            "trace_id",
            "abc",
            "latency_seconds",
        ]
        .map(String::from)
        .to_vec(),
        timeseries: vec![
            v2::TimeSeries {
                labels_refs: vec![1, 2, 3, 4],
                samples: vec![v2::Sample {
                    value: 3.0,
                    timestamp: TS,
                    start_timestamp: TS - 60_000,
                }],
                histograms: vec![],
                exemplars: vec![v2::Exemplar {
                    labels_refs: vec![6, 7],
                    value: 3.0,
                    timestamp: TS,
                }],
                metadata: Some(v2::Metadata {
                    r#type: v2::metadata::MetricType::Counter as i32,
                    help_ref: 5,
                    unit_ref: 0,
                }),
            },
            v2::TimeSeries {
                labels_refs: vec![1, 8, 3, 4],
                samples: vec![],
                histograms: vec![v2::Histogram {
                    count: Some(v2::histogram::Count::CountFloat(3.0)),
                    sum: 1.5,
                    schema: -53,
                    zero_count: Some(v2::histogram::ZeroCount::ZeroCountFloat(0.0)),
                    positive_spans: vec![v2::BucketSpan {
                        offset: 0,
                        length: 2,
                    }],
                    positive_counts: vec![1.0, 2.0],
                    custom_values: vec![0.5, 1.0],
                    timestamp: TS,
                    ..Default::default()
                }],
                exemplars: vec![],
                metadata: None,
            },
        ],
    }
}

fn snappy(b: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(b).expect("snappy")
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).expect("gzip");
    e.finish().expect("gzip")
}

fn prefixed(mode: u8, b: &[u8]) -> Vec<u8> {
    let mut v = vec![mode];
    v.extend_from_slice(b);
    v
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("create seed dir");
    fs::write(dir.join(name), bytes).expect("write seed");
    println!("{} ({} bytes)", dir.join(name).display(), bytes.len());
}
