//! Engine tests over an in-memory source; expected values are computed by hand.

use std::ops::ControlFlow;
use std::sync::Arc;

use async_trait::async_trait;
use common::{Labels, Matcher, TenantId, TenantSet};

use super::*;
use crate::logql::parser::parse;
use crate::model::{Batch, LogSource, ScanRequest, ScanStats, StreamInfo, StreamStats};

const S: i64 = 1_000_000_000;

/// `(ts, line, structured metadata)`.
type MemEntry = (i64, String, Vec<(String, String)>);
/// `(tenant, stream labels, [(ts, line)])`.
type MemStream<'a> = (&'a str, &'a str, &'a [(i64, &'a str)]);

struct Mem {
    streams: Vec<(StreamInfo, Vec<MemEntry>)>,
}

impl Mem {
    fn new(data: &[MemStream]) -> Self {
        let streams = data
            .iter()
            .map(|(tenant, labels, entries)| {
                let l = crate::ingest::labels::parse_stream_labels(labels).unwrap();
                (
                    StreamInfo {
                        tenant: TenantId::new(tenant).unwrap(),
                        fingerprint: l.stable_hash(),
                        labels: Arc::new(l),
                    },
                    entries
                        .iter()
                        .map(|(t, line)| (*t, line.to_string(), Vec::new()))
                        .collect(),
                )
            })
            .collect();
        Mem { streams }
    }
}

#[async_trait]
impl LogSource for Mem {
    async fn scan(
        &self,
        req: &ScanRequest,
        sink: &mut (dyn for<'s, 'b> FnMut(&'s StreamInfo, &'b Batch) -> ControlFlow<()> + Send),
    ) -> Result<ScanStats, crate::Error> {
        let mut stats = ScanStats::default();
        for (info, entries) in &self.streams {
            if !req.tenants.tenants().contains(&info.tenant)
                || !Matcher::all_match(&req.matchers, &info.labels)
            {
                continue;
            }
            let mut b = Batch::default();
            for (t, line, meta) in entries {
                if *t >= req.start && *t < req.end {
                    b.push(
                        *t,
                        line.as_bytes(),
                        meta.iter()
                            .map(|(n, v)| (Arc::from(n.as_str()), Arc::from(v.as_str()))),
                    );
                }
            }
            stats.entries += b.len() as u64;
            if sink(info, &b).is_break() {
                break;
            }
        }
        Ok(stats)
    }

    async fn streams(
        &self,
        _tenants: &TenantSet,
        _matchers: &[Matcher],
        _start: i64,
        _end: i64,
    ) -> Result<Vec<StreamStats>, crate::Error> {
        Ok(Vec::new())
    }
}

fn params(start: i64, end: i64, step: i64) -> QueryParams {
    QueryParams {
        tenants: TenantSet::single(TenantId::new("t").unwrap()),
        start,
        end,
        step,
        limit: 100,
        direction: Direction::Backward,
        interval: None,
        categorize: false,
        max_series: 0,
    }
}

fn data() -> Mem {
    Mem::new(&[
        (
            "t",
            r#"{app="api", env="prod"}"#,
            &[
                (10 * S, r#"{"status":200,"dur":"1.5s","msg":"ok"}"#),
                (20 * S, r#"{"status":503,"dur":"3s","msg":"fail"}"#),
                (30 * S, r#"{"status":500,"dur":"250ms","msg":"fail"}"#),
                (70 * S, r#"{"status":200,"dur":"1s","msg":"ok"}"#),
            ],
        ),
        (
            "t",
            r#"{app="web", env="prod"}"#,
            &[
                (15 * S, "level=info status=200 size=1KB"),
                (25 * S, "level=error status=500 size=2KB"),
            ],
        ),
        ("other", r#"{app="api", env="prod"}"#, &[(12 * S, "secret")]),
    ])
}

async fn run(q: &str, p: &QueryParams, instant: bool) -> QueryResult {
    let e = parse(q).unwrap();
    evaluate(&data(), &e, p, instant).await.unwrap().0
}

fn vector(r: QueryResult) -> Vec<(String, f64)> {
    match r {
        QueryResult::Vector(_, v) => v.into_iter().map(|(l, x)| (l.to_string(), x)).collect(),
        other => panic!("not a vector: {other:?}"),
    }
}

#[tokio::test]
async fn log_query_limit_and_direction() {
    let mut p = params(0, 100 * S, S);
    p.limit = 2;
    let QueryResult::Streams(s) = run(r#"{env="prod"}"#, &p, false).await else {
        panic!()
    };
    let all: Vec<i64> = s
        .iter()
        .flat_map(|s| s.entries.iter().map(|e| e.ts))
        .collect();
    assert_eq!(all.len(), 2);
    assert!(
        all.contains(&(70 * S)) && all.contains(&(30 * S)),
        "{all:?}"
    );
    p.direction = Direction::Forward;
    let QueryResult::Streams(s) = run(r#"{env="prod"}"#, &p, false).await else {
        panic!()
    };
    let all: Vec<i64> = s
        .iter()
        .flat_map(|s| s.entries.iter().map(|e| e.ts))
        .collect();
    assert!(
        all.contains(&(10 * S)) && all.contains(&(15 * S)),
        "{all:?}"
    );
    // The end is exclusive for log queries.
    let p = params(0, 70 * S, S);
    let QueryResult::Streams(s) = run(r#"{app="api"}"#, &p, false).await else {
        panic!()
    };
    assert_eq!(s[0].entries.len(), 3);
    assert_eq!(s[0].entries[0].ts, 30 * S, "backward = newest first");
}

#[tokio::test]
async fn parsed_labels_split_streams() {
    let p = params(0, 100 * S, S);
    let QueryResult::Streams(s) = run(
        r#"{app="api"} | json | status >= 500 | line_format "{{.msg}}""#,
        &p,
        false,
    )
    .await
    else {
        panic!()
    };
    assert_eq!(s.len(), 2, "two status values → two streams");
    assert!(s.iter().all(|s| s.entries.iter().all(|e| e.line == "fail")));
}

#[tokio::test]
async fn count_and_rate_over_time() {
    let p = params(0, 100 * S, S);
    let v = vector(
        run(
            r#"count_over_time({env="prod"}[1m])"#,
            &params(60 * S, 60 * S, S),
            true,
        )
        .await,
    );
    assert_eq!(
        v,
        vec![
            (r#"{app="api", env="prod"}"#.to_string(), 3.0),
            (r#"{app="web", env="prod"}"#.to_string(), 2.0)
        ]
    );
    // Window (t-1m, t]: the entry at exactly t-1m = 10s is excluded at t = 70s.
    let v = vector(
        run(
            r#"sum(count_over_time({env="prod"}[1m]))"#,
            &params(70 * S, 70 * S, S),
            true,
        )
        .await,
    );
    assert_eq!(v, vec![("{}".to_string(), 5.0)]);
    let v = vector(
        run(
            r#"sum(rate({env="prod"}[1m]))"#,
            &params(60 * S, 60 * S, S),
            true,
        )
        .await,
    );
    assert!((v[0].1 - 5.0 / 60.0).abs() < 1e-12);
    let QueryResult::Matrix(m) = run(
        r#"sum by (app) (count_over_time({env="prod"}[10s]))"#,
        &p,
        false,
    )
    .await
    else {
        panic!()
    };
    assert_eq!(m.len(), 2);
    // api: entries at 10,20,30,70 → windows (t-10,t] hold one each at t ∈ [10,19] etc.
    assert_eq!(m[0].points.len(), 40);
}

#[tokio::test]
async fn unwrap_and_errors() {
    let p = params(60 * S, 60 * S, S);
    let v = vector(
        run(
            r#"sum(sum_over_time({app="api"} | json | unwrap duration(dur) [1m]))"#,
            &p,
            true,
        )
        .await,
    );
    assert_eq!(v, vec![("{}".to_string(), 4.75)]);
    let v = vector(
        run(
            r#"max_over_time({app="api"} | json | unwrap status [1m]) by (app)"#,
            &p,
            true,
        )
        .await,
    );
    assert_eq!(v, vec![(r#"{app="api"}"#.to_string(), 503.0)]);
    let v = vector(run(r#"sum(bytes_over_time({app="web"}[1m]))"#, &p, true).await);
    assert_eq!(v[0].1, (30 + 31) as f64);
    let v = vector(
        run(
            r#"sum(sum_over_time({app="web"} | logfmt | unwrap bytes(size) [1m]))"#,
            &p,
            true,
        )
        .await,
    );
    assert_eq!(v[0].1, 3000.0);
    let e = parse(r#"sum(count_over_time({env="prod"} | json [1m]))"#).unwrap();
    let err = evaluate(&data(), &e, &p, true).await.unwrap_err();
    assert!(err.to_string().contains("JSONParserErr"), "{err}");
    let v = vector(
        run(
            r#"sum(count_over_time({env="prod"} | json | __error__="" [1m]))"#,
            &p,
            true,
        )
        .await,
    );
    assert_eq!(v[0].1, 3.0);
}

#[tokio::test]
async fn binary_ops_topk_and_literals() {
    let p = params(60 * S, 60 * S, S);
    assert!(matches!(run("1 + 1", &p, true).await, QueryResult::Scalar(_, v) if v == 2.0));
    let v = vector(run("vector(1) + vector(1)", &p, true).await);
    assert_eq!(v, vec![("{}".to_string(), 2.0)]);
    let v = vector(
        run(
            r#"sum by (app) (count_over_time({env="prod"}[1m])) > 2"#,
            &p,
            true,
        )
        .await,
    );
    assert_eq!(v, vec![(r#"{app="api"}"#.to_string(), 3.0)]);
    let v = vector(
        run(
            r#"sum by (app) (count_over_time({env="prod"}[1m])) > bool 2"#,
            &p,
            true,
        )
        .await,
    );
    assert_eq!(v.len(), 2);
    let v = vector(
        run(
            r#"topk(1, sum by (app) (count_over_time({env="prod"}[1m])))"#,
            &p,
            true,
        )
        .await,
    );
    assert_eq!(v, vec![(r#"{app="api"}"#.to_string(), 3.0)]);
    let v = vector(
        run(
            r#"sum by (app) (count_over_time({env="prod"}[1m])) / on (app) sum by (app) (count_over_time({env="prod"} |= "fail" or "error" [1m]))"#,
            &p,
            true,
        )
        .await,
    );
    assert_eq!(
        v,
        vec![
            (r#"{app="api"}"#.to_string(), 1.5),
            (r#"{app="web"}"#.to_string(), 2.0)
        ]
    );
    let v = vector(
        run(
            r#"label_replace(sum by (app) (count_over_time({env="prod"}[1m])), "x", "$1-y", "app", "(.*)")"#,
            &p,
            true,
        )
        .await,
    );
    assert_eq!(v[0].0, r#"{app="api", x="api-y"}"#);
    let v = vector(run(r#"absent_over_time({app="nope"}[1m])"#, &p, true).await);
    assert_eq!(v, vec![(r#"{app="nope"}"#.to_string(), 1.0)]);
}

#[tokio::test]
async fn tenants_never_leak_and_federation_labels() {
    let p = params(0, 100 * S, S);
    let QueryResult::Streams(s) = run(r#"{app="api"} |= "secret""#, &p, false).await else {
        panic!()
    };
    assert!(s.is_empty());
    let mut p = params(0, 100 * S, S);
    p.tenants = TenantSet::parse("t|other").unwrap();
    let QueryResult::Streams(s) = run(r#"{app="api"} |= "secret""#, &p, false).await else {
        panic!()
    };
    assert_eq!(s[0].labels.get(TENANT_LABEL), Some("other"));
    let QueryResult::Streams(s) =
        run(r#"{app="api", __tenant_id__="t"} |= "secret""#, &p, false).await
    else {
        panic!()
    };
    assert!(s.is_empty());
    let _ = Labels::default();
}
