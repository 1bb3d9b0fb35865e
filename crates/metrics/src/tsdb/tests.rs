//! Store-level tests: write → select through head, WAL, blocks, compaction and retention.

use std::sync::Arc;

use common::config::{Duration as CfgDuration, StorageConfig};
use common::limits::{Limits, Overrides};
use common::{MatchOp, Matcher};

use super::*;
use crate::model::{Histogram, SeriesWrite, STALE_NAN_BITS};

const H: i64 = 3_600_000;
const BLOCK: i64 = 2 * H;

fn cfg(dir: &Path) -> StorageConfig {
    StorageConfig {
        data_dir: dir.to_path_buf(),
        block_duration: CfgDuration::from_millis(BLOCK),
        wal_fsync: false,
        ..StorageConfig::default()
    }
}

fn limits() -> Limits {
    Limits {
        out_of_order_time_window: CfgDuration::ZERO,
        ..Limits::default()
    }
}

async fn open_with(dir: &Path, blocks: &BlockStore, l: Limits) -> MetricsStore {
    MetricsStore::open(&cfg(dir), Overrides::fixed(l), blocks.clone())
        .await
        .unwrap()
}

fn t(id: &str) -> TenantId {
    TenantId::new(id).unwrap()
}

fn one(id: &str) -> TenantSet {
    TenantSet::single(t(id))
}

fn lbl(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn sw(labels: Labels, samples: &[(i64, f64)]) -> SeriesWrite {
    SeriesWrite {
        labels,
        samples: samples.iter().map(|&(t, v)| Sample { t, v }).collect(),
        ..Default::default()
    }
}

fn batch(series: Vec<SeriesWrite>) -> WriteBatch {
    WriteBatch {
        series,
        metadata: vec![],
    }
}

fn m(op: MatchOp, n: &str, v: &str) -> Matcher {
    Matcher::new(op, n, v).unwrap()
}

fn name(v: &str) -> Matcher {
    Matcher::equal("__name__", v)
}

/// Comparable form of a series: labels, (t, value bits), histogram count.
type Norm = (String, Vec<(i64, u64)>, usize);

/// Comparable form: labels and sample bits.
fn norm(s: &[SeriesData]) -> Vec<Norm> {
    s.iter()
        .map(|s| {
            (
                s.labels.to_string(),
                s.samples.iter().map(|x| (x.t, x.v.to_bits())).collect(),
                s.histograms.len(),
            )
        })
        .collect()
}

/// A workload: `n` series of `k` samples from `start`, every 15s, values of several shapes.
fn workload(n: usize, k: usize, start: i64) -> WriteBatch {
    let mut series = Vec::new();
    for i in 0..n {
        let labels = lbl(&[
            (
                "__name__",
                ["node_cpu_seconds_total", "node_memory_bytes", "node_load1"][i % 3],
            ),
            ("instance", &format!("host-{}:9100", i / 30)),
            ("job", "node"),
            ("cpu", &format!("{}", i % 10)),
        ]);
        let samples: Vec<(i64, f64)> = (0..k)
            .map(|j| {
                let t = start + j as i64 * 15_000;
                let v = match i % 3 {
                    0 => (1000 + i * 7) as f64 + j as f64 * 0.37,
                    1 => (8 << 30) as f64 - (j * 4096) as f64,
                    _ => ((i + j) as f64 * 0.1).sin(),
                };
                (t, v)
            })
            .collect();
        series.push(sw(labels, &samples));
    }
    batch(series)
}

#[tokio::test]
async fn select_with_every_matcher_kind() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_with(dir.path(), &BlockStore::in_memory(), limits()).await;
    let a = one("a");
    s.write(
        &t("a"),
        batch(vec![
            sw(
                lbl(&[("__name__", "up"), ("job", "api"), ("env", "prod")]),
                &[(1000, 1.0), (2000, 0.0)],
            ),
            sw(lbl(&[("__name__", "up"), ("job", "db")]), &[(1000, 1.0)]),
            sw(
                lbl(&[("__name__", "req"), ("job", "api"), ("code", "200")]),
                &[(1500, 5.0)],
            ),
        ]),
    )
    .await
    .unwrap();
    let q = |ms: Vec<Matcher>| {
        let s = s.clone();
        let a = a.clone();
        async move {
            s.select(&a, &ms, 0, 10_000)
                .await
                .unwrap()
                .into_iter()
                .map(|x| x.labels.to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        q(vec![name("up")]).await,
        vec![
            r#"{__name__="up", env="prod", job="api"}"#,
            r#"{__name__="up", job="db"}"#
        ]
    );
    assert_eq!(
        q(vec![name("up"), m(MatchOp::NotEqual, "job", "api")]).await,
        vec![r#"{__name__="up", job="db"}"#]
    );
    assert_eq!(q(vec![m(MatchOp::Regex, "job", "a.*")]).await.len(), 2);
    assert_eq!(
        q(vec![m(MatchOp::NotRegex, "job", "a.*")]).await,
        vec![r#"{__name__="up", job="db"}"#]
    );
    // A missing label matches "": env!="prod" keeps series without env, env="" selects them.
    assert_eq!(q(vec![m(MatchOp::NotEqual, "env", "prod")]).await.len(), 2);
    assert_eq!(
        q(vec![name("up"), Matcher::equal("env", "")]).await,
        vec![r#"{__name__="up", job="db"}"#]
    );
    assert_eq!(q(vec![m(MatchOp::Regex, "env", ".+")]).await.len(), 1);
    assert_eq!(q(vec![m(MatchOp::Regex, "nope", ".*")]).await.len(), 3);
    assert!(q(vec![name("nope")]).await.is_empty());
    // Time range prunes samples and series without data in it.
    let r = s.select(&a, &[name("up")], 1500, 2500).await.unwrap();
    assert_eq!(
        norm(&r),
        vec![(
            r#"{__name__="up", env="prod", job="api"}"#.to_string(),
            vec![(2000, 0.0f64.to_bits())],
            0
        )]
    );
}

#[tokio::test]
async fn out_of_order_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let s = open_with(dir.path(), &blocks, limits()).await;
    let a = t("a");
    let l = lbl(&[("__name__", "x")]);
    let o = s
        .write(
            &a,
            batch(vec![sw(l.clone(), &[(10_000, 1.0), (20_000, 2.0)])]),
        )
        .await
        .unwrap();
    assert_eq!((o.stats.samples, o.rejected_count), (2, 0));
    // Exact duplicate: silently ignored. Same t, other value: rejected. Older: out of order.
    let o = s
        .write(
            &a,
            batch(vec![sw(
                l.clone(),
                &[(20_000, 2.0), (20_000, 3.0), (15_000, 1.5), (30_000, 3.0)],
            )]),
        )
        .await
        .unwrap();
    assert_eq!(o.stats.samples, 1);
    assert_eq!(o.rejected_count, 2);
    assert!(
        o.rejected[0].starts_with("duplicate sample for timestamp"),
        "{}",
        o.rejected[0]
    );
    assert!(
        o.rejected[1].starts_with("out of order sample"),
        "{}",
        o.rejected[1]
    );
    assert!(o.rejected[1].contains("out_of_order_time_window"));

    // With a 10s window, 25s is accepted (sorted on read), 15s is still too old.
    let dir2 = tempfile::tempdir().unwrap();
    let s2 = open_with(
        dir2.path(),
        &blocks,
        Limits {
            out_of_order_time_window: CfgDuration::from_secs(10),
            ..limits()
        },
    )
    .await;
    s2.write(
        &a,
        batch(vec![sw(l.clone(), &[(10_000, 1.0), (30_000, 3.0)])]),
    )
    .await
    .unwrap();
    let o = s2
        .write(
            &a,
            batch(vec![sw(
                l.clone(),
                &[
                    (25_000, 2.5),
                    (15_000, 1.5),
                    (25_000, 2.5),
                    (25_000, 9.0),
                    (30_000, 3.0),
                ],
            )]),
        )
        .await
        .unwrap();
    assert_eq!(
        (o.stats.samples, o.rejected_count),
        (1, 2),
        "{:?}",
        o.rejected
    );
    let r = s2
        .select(&one("a"), &[name("x")], 0, i64::MAX)
        .await
        .unwrap();
    assert_eq!(
        r[0].samples.iter().map(|x| x.t).collect::<Vec<_>>(),
        vec![10_000, 25_000, 30_000]
    );
    // Out-of-order samples survive a restart.
    drop(s2);
    let s2 = open_with(dir2.path(), &blocks, limits()).await;
    let r2 = s2
        .select(&one("a"), &[name("x")], 0, i64::MAX)
        .await
        .unwrap();
    assert_eq!(norm(&r), norm(&r2));
}

#[tokio::test]
async fn max_active_series_is_429_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_with(
        dir.path(),
        &BlockStore::in_memory(),
        Limits {
            max_active_series: 2,
            ..limits()
        },
    )
    .await;
    let a = t("team-a");
    s.write(&a, batch(vec![sw(lbl(&[("__name__", "a")]), &[(1, 1.0)])]))
        .await
        .unwrap();
    let e = s
        .write(
            &a,
            batch(vec![
                sw(lbl(&[("__name__", "a")]), &[(2, 1.0)]),
                sw(lbl(&[("__name__", "b")]), &[(1, 1.0)]),
                sw(lbl(&[("__name__", "c")]), &[(1, 1.0)]),
            ]),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), 429);
    let msg = e.to_string();
    assert!(
        msg.contains("max_active_series") && msg.contains("team-a"),
        "{msg}"
    );
    // Nothing of the refused request was written; existing series and one more still fit.
    assert_eq!(
        s.select(&one("team-a"), &[name("a")], 0, 10).await.unwrap()[0]
            .samples
            .len(),
        1
    );
    s.write(
        &a,
        batch(vec![
            sw(lbl(&[("__name__", "b")]), &[(1, 1.0)]),
            sw(lbl(&[("__name__", "b")]), &[(2, 1.0)]),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(s.stats().tenants.values().next().unwrap().active_series, 2);
}

fn hist(count: f64) -> Arc<Histogram> {
    Arc::new(Histogram {
        schema: 1,
        count,
        sum: count * 2.0,
        positive_spans: vec![crate::model::Span {
            offset: 0,
            length: 2,
        }],
        positive_buckets: vec![count / 2.0, count / 2.0],
        ..Default::default()
    })
}

fn rich_batch() -> WriteBatch {
    let mut b = workload(60, 50, 1_000_000);
    b.series.push(SeriesWrite {
        labels: lbl(&[("__name__", "lat"), ("job", "api")]),
        samples: vec![
            Sample {
                t: 1_000_000,
                v: f64::from_bits(STALE_NAN_BITS),
            },
            Sample {
                t: 1_015_000,
                v: f64::NAN,
            },
        ],
        histograms: (0..5)
            .map(|i| HistogramSample {
                t: 1_000_000 + i * 15_000,
                h: hist(i as f64),
            })
            .collect(),
        exemplars: vec![Exemplar {
            labels: lbl(&[("trace_id", "abc")]),
            value: 0.3,
            t: 1_000_000,
        }],
    });
    b.metadata.push((
        "lat".into(),
        Metadata {
            metric_type: crate::model::MetricType::Histogram,
            help: "latency".into(),
            unit: "seconds".into(),
        },
    ));
    b
}

#[tokio::test]
async fn wal_replay_reproduces_the_head_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let s = open_with(dir.path(), &blocks, limits()).await;
    let a = t("a");
    s.write(&a, rich_batch()).await.unwrap();
    s.write(&a, workload(60, 10, 1_000_000 + 50 * 15_000))
        .await
        .unwrap();
    let all = [m(MatchOp::Regex, "__name__", ".+")];
    let before = s.select(&one("a"), &all, i64::MIN, i64::MAX).await.unwrap();
    assert_eq!(before.len(), 61);
    let ex_before = s
        .exemplars(&one("a"), &[], i64::MIN, i64::MAX)
        .await
        .unwrap();
    // Drop without close: acknowledged writes are in the WAL.
    drop(s);
    let s = open_with(dir.path(), &blocks, limits()).await;
    let after = s.select(&one("a"), &all, i64::MIN, i64::MAX).await.unwrap();
    assert_eq!(norm(&before), norm(&after));
    assert_eq!(
        before
            .iter()
            .map(|s| s.histograms.clone())
            .collect::<Vec<_>>(),
        after
            .iter()
            .map(|s| s.histograms.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        s.exemplars(&one("a"), &[], i64::MIN, i64::MAX)
            .await
            .unwrap(),
        ex_before
    );
    assert_eq!(s.metadata(&one("a"), None, 0, 0).len(), 1);
    // New series after replay get fresh ids (no clash with replayed ones), and a clean close works.
    s.write(
        &a,
        batch(vec![sw(lbl(&[("__name__", "new")]), &[(5, 5.0)])]),
    )
    .await
    .unwrap();
    s.close().await.unwrap();
    drop(s);
    let s = open_with(dir.path(), &blocks, limits()).await;
    assert_eq!(
        s.select(&one("a"), &all, i64::MIN, i64::MAX)
            .await
            .unwrap()
            .len(),
        62
    );
}

#[tokio::test]
async fn blocks_plus_head_equal_head_only_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let s = open_with(dir.path(), &blocks, limits()).await;
    let a = t("a");
    // 5h of data from t=0 in 1h writes: windows [0,2h) [2h,4h) [4h,6h).
    for hour in 0..5 {
        s.write(&a, workload(90, 240, hour * H)).await.unwrap();
    }
    let mut rb = rich_batch();
    for sw in &mut rb.series {
        sw.samples.iter_mut().for_each(|x| x.t += 3 * H);
        sw.histograms.iter_mut().for_each(|x| x.t += 3 * H);
    }
    rb.series
        .retain(|s| s.labels.get("__name__") == Some("lat"));
    s.write(&a, rb).await.unwrap();
    let all = [m(MatchOp::Regex, "__name__", ".+")];
    let ranges = [
        (i64::MIN, i64::MAX),
        (H, 3 * H + 7),
        (2 * H - 1, 2 * H),
        (4 * H, 5 * H),
    ];
    let mut want = Vec::new();
    for (lo, hi) in ranges {
        want.push(s.select(&one("a"), &all, lo, hi).await.unwrap());
    }
    let wal_before = s.stats().tenants.values().next().unwrap().wal_bytes;
    // Wall clock at 4h + 1min + 1ms: windows before 4h are finished.
    s.maintenance(4 * H + CUT_GRACE_MS + 1).await.unwrap();
    let st = s.stats().tenants.values().next().unwrap().clone();
    assert_eq!(st.blocks, 2, "{st:?}");
    assert!(st.wal_bytes < wal_before, "wal not truncated: {st:?}");
    for (i, (lo, hi)) in ranges.into_iter().enumerate() {
        let got = s.select(&one("a"), &all, lo, hi).await.unwrap();
        assert_eq!(norm(&got), norm(&want[i]), "range {i}");
    }
    // Samples of cut windows are now out of bounds.
    let o = s
        .write(
            &a,
            batch(vec![sw(lbl(&[("__name__", "late")]), &[(H, 1.0)])]),
        )
        .await
        .unwrap();
    assert!(
        o.rejected[0].starts_with("out of bounds"),
        "{:?}",
        o.rejected
    );
    // Restart: the checkpoint plus the blocks give the same answers.
    drop(s);
    let s = open_with(dir.path(), &blocks, limits()).await;
    for (i, (lo, hi)) in ranges.into_iter().enumerate() {
        let got = s.select(&one("a"), &all, lo, hi).await.unwrap();
        assert_eq!(norm(&got), norm(&want[i]), "range {i} after restart");
    }
    // A node with an empty data dir serves what the bucket holds.
    let empty = tempfile::tempdir().unwrap();
    let s2 = open_with(empty.path(), &blocks, limits()).await;
    let got = s2.select(&one("a"), &all, 0, 4 * H - 1).await.unwrap();
    assert_eq!(
        norm(&got),
        norm(&s.select(&one("a"), &all, 0, 4 * H - 1).await.unwrap())
    );
    assert!(!got.is_empty());
    // A fresh node's first write into a window the bucket already holds is out of bounds.
    let empty2 = tempfile::tempdir().unwrap();
    let s4 = open_with(empty2.path(), &blocks, limits()).await;
    let o = s4
        .write(
            &a,
            batch(vec![sw(
                lbl(&[("__name__", "late")]),
                &[(H, 1.0), (5 * H, 1.0)],
            )]),
        )
        .await
        .unwrap();
    assert_eq!(
        (o.stats.samples, o.rejected_count),
        (1, 1),
        "{:?}",
        o.rejected
    );
    // Force-cut everything, compact (3 × 2h → 6h), the data stays identical.
    s.flush_all_to_blocks().await.unwrap();
    assert_eq!(s.stats().tenants.values().next().unwrap().active_series, 0);
    s.compact_all().await.unwrap();
    s.refresh_block_lists().await.unwrap();
    let st = s.stats().tenants.values().next().unwrap().clone();
    assert_eq!(st.blocks, 1, "{st:?}");
    for (i, (lo, hi)) in ranges.into_iter().enumerate() {
        let got = s.select(&one("a"), &all, lo, hi).await.unwrap();
        assert_eq!(norm(&got), norm(&want[i]), "range {i} after compaction");
        let got_h: Vec<_> = got.iter().map(|s| s.histograms.clone()).collect();
        let want_h: Vec<_> = want[i].iter().map(|s| s.histograms.clone()).collect();
        assert_eq!(got_h, want_h);
    }
    // Retention: 6h block ends at 6h-1; at now = 6h + 1d it is gone with a 1d retention.
    let s3 = open_with(
        dir.path(),
        &blocks,
        Limits {
            retention_period: CfgDuration::from_secs(86_400),
            ..limits()
        },
    )
    .await;
    s3.maintenance(6 * H + 24 * H - 10).await.unwrap();
    assert!(!s3
        .select(&one("a"), &all, i64::MIN, i64::MAX)
        .await
        .unwrap()
        .is_empty());
    s3.maintenance(6 * H + 24 * H + 10).await.unwrap();
    assert!(s3
        .select(&one("a"), &all, i64::MIN, i64::MAX)
        .await
        .unwrap()
        .is_empty());
    assert!(blocks.list_blocks(&a, SIGNAL).await.unwrap().is_empty());
}

#[tokio::test]
async fn federation_adds_tenant_label_and_never_mixes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_with(dir.path(), &BlockStore::in_memory(), limits()).await;
    let l = lbl(&[("__name__", "up"), ("job", "x")]);
    s.write(&t("a"), batch(vec![sw(l.clone(), &[(1, 1.0)])]))
        .await
        .unwrap();
    s.write(&t("b"), batch(vec![sw(l.clone(), &[(1, 2.0)])]))
        .await
        .unwrap();
    s.write(&t("c"), batch(vec![sw(l.clone(), &[(1, 3.0)])]))
        .await
        .unwrap();
    let only_a = s.select(&one("a"), &[name("up")], 0, 10).await.unwrap();
    assert_eq!(
        norm(&only_a),
        vec![(l.to_string(), vec![(1, 1.0f64.to_bits())], 0)]
    );
    let ab = TenantSet::parse("b|a").unwrap();
    let r = s.select(&ab, &[name("up")], 0, 10).await.unwrap();
    let got: Vec<_> = r
        .iter()
        .map(|s| {
            (
                s.labels.get(TENANT_LABEL).unwrap().to_string(),
                s.samples[0].v,
            )
        })
        .collect();
    assert_eq!(got, vec![("a".into(), 1.0), ("b".into(), 2.0)]);
    // Matchers on __tenant_id__ pick tenants.
    let r = s
        .select(&ab, &[name("up"), Matcher::equal(TENANT_LABEL, "b")], 0, 10)
        .await
        .unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].samples[0].v, 2.0);
    let names = s.label_names(&ab, &[], 0, 10, 0).await.unwrap();
    assert_eq!(names, vec!["__name__", TENANT_LABEL, "job"]);
    assert_eq!(
        s.label_values(&ab, TENANT_LABEL, &[], 0, 10, 0)
            .await
            .unwrap(),
        vec!["a", "b"]
    );
    let src = s.source(ab);
    assert_eq!(src.select(&[name("up")], 0, 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn query_limits_in_source() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_with(
        dir.path(),
        &BlockStore::in_memory(),
        Limits {
            max_series_per_query: 5,
            max_samples_per_query: 50,
            ..limits()
        },
    )
    .await;
    s.write(&t("a"), workload(9, 20, 0)).await.unwrap();
    // The same answers from the head and, after a cut, from a block (early per-source checks).
    for round in 0..2 {
        if round == 1 {
            s.flush_all_to_blocks().await.unwrap();
        }
        let src = s.source(one("a"));
        let e = src
            .select(&[m(MatchOp::Regex, "__name__", ".+")], 0, i64::MAX)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 422);
        assert!(e.to_string().contains("max_series_per_query"), "{e}");
        let e = src
            .select(&[name("node_load1")], 0, i64::MAX)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("max_samples_per_query"), "{e}");
        assert_eq!(
            src.select(&[name("node_load1")], 0, 15_000 * 10)
                .await
                .unwrap()
                .len(),
            3
        );
    }
}

#[tokio::test]
async fn series_label_names_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let s = open_with(dir.path(), &blocks, limits()).await;
    let a = t("a");
    s.write(
        &a,
        batch(vec![
            sw(
                lbl(&[("__name__", "up"), ("job", "api"), ("zone", "eu")]),
                &[(1000, 1.0)],
            ),
            sw(lbl(&[("__name__", "up"), ("job", "db")]), &[(5 * H, 1.0)]),
            sw(
                lbl(&[("__name__", "req"), ("code", "200")]),
                &[(5 * H, 1.0)],
            ),
        ]),
    )
    .await
    .unwrap();
    let aa = one("a");
    let check = |s: MetricsStore| {
        let aa = aa.clone();
        async move {
            let all = s.series(&aa, &[], i64::MIN, i64::MAX, 0).await.unwrap();
            assert_eq!(all.len(), 3);
            assert!(all.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(
                s.series(
                    &aa,
                    &[vec![name("up")], vec![Matcher::equal("code", "200")]],
                    0,
                    i64::MAX,
                    0
                )
                .await
                .unwrap()
                .len(),
                3
            );
            assert_eq!(
                s.series(&aa, &[vec![name("up")]], 0, 2000, 0)
                    .await
                    .unwrap()
                    .len(),
                1
            );
            assert_eq!(
                s.series(&aa, &[vec![name("up")]], 0, i64::MAX, 1)
                    .await
                    .unwrap()
                    .len(),
                1
            );
            assert_eq!(
                s.label_names(&aa, &[], i64::MIN, i64::MAX, 0)
                    .await
                    .unwrap(),
                vec!["__name__", "code", "job", "zone"]
            );
            assert_eq!(
                s.label_names(&aa, &[], 0, 2000, 0).await.unwrap(),
                vec!["__name__", "job", "zone"]
            );
            assert_eq!(
                s.label_names(&aa, &[vec![name("req")]], 0, i64::MAX, 0)
                    .await
                    .unwrap(),
                vec!["__name__", "code"]
            );
            assert_eq!(
                s.label_names(&aa, &[], i64::MIN, i64::MAX, 2)
                    .await
                    .unwrap(),
                vec!["__name__", "code"]
            );
            assert_eq!(
                s.label_values(&aa, "job", &[], i64::MIN, i64::MAX, 0)
                    .await
                    .unwrap(),
                vec!["api", "db"]
            );
            assert_eq!(
                s.label_values(&aa, "job", &[], 4 * H, 6 * H, 0)
                    .await
                    .unwrap(),
                vec!["db"]
            );
            assert_eq!(
                s.label_values(
                    &aa,
                    "__name__",
                    &[vec![Matcher::equal("job", "api")]],
                    0,
                    i64::MAX,
                    0
                )
                .await
                .unwrap(),
                vec!["up"]
            );
            assert!(s
                .label_values(&aa, "nope", &[], 0, i64::MAX, 0)
                .await
                .unwrap()
                .is_empty());
        }
    };
    check(s.clone()).await;
    // The same answers once the first window is in a block.
    s.maintenance(2 * H + CUT_GRACE_MS + 1).await.unwrap();
    s.refresh_block_lists().await.unwrap();
    assert_eq!(s.stats().tenants.values().next().unwrap().blocks, 1);
    check(s.clone()).await;
    s.flush_all_to_blocks().await.unwrap();
    check(s.clone()).await;
}

#[tokio::test]
async fn exemplars_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_with(dir.path(), &BlockStore::in_memory(), limits()).await;
    let a = t("a");
    let l = lbl(&[("__name__", "lat_bucket"), ("le", "1")]);
    let ex: Vec<Exemplar> = (0..15)
        .map(|i| Exemplar {
            labels: lbl(&[("trace_id", &format!("t{i}"))]),
            value: i as f64,
            t: i * 1000,
        })
        .collect();
    let mut b = batch(vec![SeriesWrite {
        labels: l.clone(),
        samples: vec![Sample { t: 0, v: 1.0 }],
        histograms: vec![],
        exemplars: ex.clone(),
    }]);
    b.metadata = vec![
        (
            "lat".into(),
            Metadata {
                metric_type: crate::model::MetricType::Histogram,
                help: "old".into(),
                unit: String::new(),
            },
        ),
        (
            "up".into(),
            Metadata {
                metric_type: crate::model::MetricType::Gauge,
                help: "up".into(),
                unit: String::new(),
            },
        ),
    ];
    let o = s.write(&a, b).await.unwrap();
    assert_eq!(o.stats.exemplars, 15);
    let mut b = batch(vec![]);
    b.metadata = vec![(
        "lat".into(),
        Metadata {
            metric_type: crate::model::MetricType::Histogram,
            help: "new".into(),
            unit: String::new(),
        },
    )];
    s.write(&a, b).await.unwrap();
    let got = s
        .exemplars(&one("a"), &[vec![name("lat_bucket")]], 0, i64::MAX)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, l);
    assert_eq!(got[0].1, ex[5..].to_vec(), "ring keeps the last 10");
    assert_eq!(
        s.exemplars(&one("a"), &[vec![name("lat_bucket")]], 12_000, 13_000)
            .await
            .unwrap()[0]
            .1
            .len(),
        2
    );
    assert!(s
        .exemplars(&one("a"), &[vec![name("other")]], 0, i64::MAX)
        .await
        .unwrap()
        .is_empty());
    let md = s.metadata(&one("a"), None, 0, 0);
    assert_eq!(
        md.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(),
        vec!["lat", "up"]
    );
    assert_eq!(md[0].1[0].help, "new", "latest wins");
    assert_eq!(s.metadata(&one("a"), Some("up"), 0, 0).len(), 1);
    assert_eq!(s.metadata(&one("a"), None, 1, 0).len(), 1);
    assert!(s.metadata(&one("b"), None, 0, 0).is_empty());
}

#[tokio::test]
async fn concurrent_writers_and_bytes_per_sample() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let s = open_with(dir.path(), &blocks, limits()).await;
    let a = t("bench");
    let n = 3000;
    let k = 120;
    let started = Instant::now();
    // Two writers on disjoint series, 10 samples per series per request, like remote write shards.
    let mut tasks = Vec::new();
    for part in 0..2 {
        let s = s.clone();
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            for step in 0..k / 10 {
                let mut b = workload(n, 10, step as i64 * 150_000);
                b.series = b
                    .series
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| i % 2 == part)
                    .map(|(_, s)| s)
                    .collect();
                let o = s.write(&a, b).await.unwrap();
                assert_eq!(o.rejected_count, 0, "{:?}", o.rejected);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let ingest = started.elapsed();
    let st = s.stats().tenants.values().next().unwrap().clone();
    assert_eq!(st.active_series, n as u64);
    assert_eq!(st.head_samples, (n * k) as u64);
    s.flush_all_to_blocks().await.unwrap();
    s.refresh_block_lists().await.unwrap();
    let st = s.stats().tenants.values().next().unwrap().clone();
    assert_eq!(st.block_samples, (n * k) as u64);
    println!(
        "tsdb: {n} series x {k} samples: ingest {:.0} samples/s (debug build), blocks {} bytes = {:.3} bytes/sample",
        (n * k) as f64 / ingest.as_secs_f64(),
        st.block_bytes,
        st.block_bytes as f64 / (n * k) as f64
    );
}

/// Deterministic pseudo-random numbers for workloads.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Kinds of node-exporter-shaped series, by share of series.
const KINDS: [&str; 10] = [
    "node_cpu_seconds_total",
    "node_memory_MemFree_bytes",
    "node_network_receive_bytes_total",
    "node_filesystem_size_bytes",
    "node_load1",
    "node_disk_io_time_seconds_total",
    "node_scrape_collector_duration_seconds",
    "node_timex_sync_status",
    "go_gc_duration_seconds",
    "process_cpu_ratio",
];

fn mix(x: u64) -> u64 {
    Rng(x).next()
}

/// Labels of series `i` of the node-like workload.
fn node_labels(i: usize) -> Labels {
    lbl(&[
        ("__name__", KINDS[i % 10]),
        (
            "instance",
            &format!("host-{:04}.example.internal:9100", i / 100),
        ),
        ("job", "node"),
        ("cpu", &format!("{}", (i / 10) % 10)),
    ])
}

/// Sample `j` of series `i` (a pure function, so writers can generate data step by step): counters
/// with 2–3 decimals, integer byte gauges and counters, constants, durations as whole nanoseconds in
/// seconds (what Go exporters emit) and 10% of full-precision ratios.
fn node_sample(i: usize, j: usize) -> Sample {
    let r = |x: usize| mix(((i as u64) << 32) ^ x as u64);
    let u = |x: usize| (r(x) >> 11) as f64 / (1u64 << 53) as f64;
    // Scrape jitter is per target: all series of an instance share their timestamps.
    let t = 1_700_000_000_000
        + j as i64 * 15_000
        + (mix(((i / 100) as u64) << 32 ^ j as u64) % 5) as i64;
    let base = (mix(i as u64) % 100_000) as f64;
    let v = match i % 10 {
        // Counter, 2 decimals, increments of 0..15.
        0 => ((base + j as f64 * 7.5 + u(j) * 7.5) * 100.0).round() / 100.0,
        // Gauge in pages: changes every other scrape.
        1 => base * 4096.0 + ((r(j / 2) % 64) * 4096) as f64,
        // Integer counter with random increments.
        2 => base * 1000.0 + (j as f64) * 50_000.0 + (r(j) % 1000) as f64,
        3 => 512_110_190_592.0,
        4 => (u(j) * 400.0).round() / 100.0,
        5 => ((base + j as f64 * 0.3 + u(j) * 0.1) * 1000.0).round() / 1000.0,
        // Durations: whole nanoseconds.
        6 | 8 => (r(j) % 5_000_000) as f64 / 1e9,
        7 => 1.0,
        _ => u(j),
    };
    Sample { t, v }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

/// `cargo test -p metrics --lib tsdb::tests::bench_workload -- --ignored --nocapture` (use --release
/// for meaningful ingest rates). Prints figures; asserts nothing about speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_workload() {
    let n: usize = std::env::var("TSDB_BENCH_SERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let k = 120;
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let s = open_with(
        dir.path(),
        &blocks,
        Limits {
            max_active_series: 0,
            ..limits()
        },
    )
    .await;
    let a = t("bench");
    // Requests of 2000 series × 10 samples from two writers, as remote-write shards would send;
    // built per step outside the timed part.
    let mut ingest = std::time::Duration::ZERO;
    let mut rss0 = 0;
    for step in 0..k / 10 {
        let reqs: Vec<WriteBatch> = (0..n)
            .collect::<Vec<_>>()
            .chunks(2000)
            .map(|c| {
                batch(
                    c.iter()
                        .map(|&i| SeriesWrite {
                            labels: node_labels(i),
                            samples: (step * 10..step * 10 + 10)
                                .map(|j| node_sample(i, j))
                                .collect(),
                            ..Default::default()
                        })
                        .collect(),
                )
            })
            .collect();
        if step == 0 {
            rss0 = rss_bytes();
        }
        let started = Instant::now();
        let (x, y): (Vec<_>, Vec<_>) = reqs.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
        let mut tasks = Vec::new();
        for part in [x, y] {
            let s = s.clone();
            let a = a.clone();
            tasks.push(tokio::spawn(async move {
                for (_, b) in part {
                    let o = s.write(&a, b).await.unwrap();
                    assert_eq!(o.rejected_count, 0);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        ingest += started.elapsed();
    }
    let rss1 = rss_bytes();
    let (structs, chunks, other) = s.tenant_db(&a).unwrap().head.memory_estimate();
    println!(
        "  head estimate per series: structs {} + chunks {} + labels/maps {} bytes (MemSeries {} bytes)",
        structs / n,
        chunks / n,
        other / n,
        std::mem::size_of::<head::MemSeries>()
    );
    let st = s.stats().tenants.values().next().unwrap().clone();
    let started = Instant::now();
    s.flush_all_to_blocks().await.unwrap();
    let cut = started.elapsed();
    s.refresh_block_lists().await.unwrap();
    let bst = s.stats().tenants.values().next().unwrap().clone();
    let meta = &blocks.list_blocks(&a, SIGNAL).await.unwrap()[0];
    let started = Instant::now();
    let q = s
        .select(
            &one("bench"),
            &[name("node_cpu_seconds_total")],
            i64::MIN,
            i64::MAX,
        )
        .await
        .unwrap();
    let query = started.elapsed();
    println!(
        "tsdb bench: {n} series x {k} samples\n  ingest: {:.0} samples/s ({:.2}s)\n  head: {} series, rss delta {:.0} bytes/series, wal {} bytes\n  \
         cut: {:.2}s; block {} bytes (index {}, chunks {}) = {:.3} bytes/sample\n  select {} series of one metric from the block: {:.1}ms",
        (n * k) as f64 / ingest.as_secs_f64(),
        ingest.as_secs_f64(),
        st.active_series,
        (rss1.saturating_sub(rss0)) as f64 / n as f64,
        st.wal_bytes,
        cut.as_secs_f64(),
        bst.block_bytes,
        stat(meta, "index_bytes"),
        stat(meta, "chunks_bytes"),
        bst.block_bytes as f64 / (n * k) as f64,
        q.len(),
        query.as_secs_f64() * 1000.0,
    );
}

/// Bytes per sample of the block encoding per value shape (`--ignored --nocapture`).
#[test]
#[ignore]
fn bench_encoding_by_kind() {
    for (kind, metric) in KINDS.iter().enumerate() {
        let mut w = BlockWriter::default();
        let mut ls: Vec<(Labels, usize)> = (0..20_000)
            .filter(|i| i % 10 == kind)
            .map(|i| (node_labels(i), i))
            .collect();
        ls.sort();
        for (l, i) in &ls {
            let ss: Vec<Sample> = (0..120).map(|j| node_sample(*i, j)).collect();
            w.add(l, &ss, &[]).unwrap();
        }
        let (index, chunks, c) = w.finish().unwrap();
        println!(
            "{:40} index {:.3} chunks {:.3} bytes/sample",
            metric,
            index.len() as f64 / c.samples as f64,
            chunks.len() as f64 / c.samples as f64
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutting_while_writing_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let c = StorageConfig {
        block_duration: CfgDuration::from_millis(60_000),
        ..cfg(dir.path())
    };
    let s = MetricsStore::open(&c, Overrides::fixed(limits()), blocks.clone())
        .await
        .unwrap();
    let latest = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let maint = {
        let (s, latest, done) = (s.clone(), latest.clone(), done.clone());
        tokio::spawn(async move {
            let mut cuts = 0;
            while !done.load(Ordering::Acquire) {
                s.maintenance(latest.load(Ordering::Acquire)).await.unwrap();
                cuts += 1;
                tokio::task::yield_now().await;
            }
            cuts
        })
    };
    let n = 600;
    for i in 0..n {
        let t = i * 1000;
        let b = batch(
            (0..5)
                .map(|k| {
                    sw(
                        lbl(&[("__name__", "m"), ("k", &k.to_string())]),
                        &[(t, (i * k) as f64)],
                    )
                })
                .collect(),
        );
        let o = s.write(&t_id(), b).await.unwrap();
        assert_eq!(o.rejected_count, 0, "{:?}", o.rejected);
        latest.store(t, Ordering::Release);
        if i % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    done.store(true, Ordering::Release);
    assert!(maint.await.unwrap() > 0);
    let check = |got: Vec<SeriesData>| {
        assert_eq!(got.len(), 5);
        for (k, series) in got.iter().enumerate() {
            let want: Vec<(i64, f64)> = (0..n).map(|i| (i * 1000, (i * k as i64) as f64)).collect();
            let have: Vec<(i64, f64)> = series.samples.iter().map(|x| (x.t, x.v)).collect();
            assert_eq!(have, want, "series {k}");
        }
    };
    check(
        s.select(&one("w"), &[name("m")], i64::MIN, i64::MAX)
            .await
            .unwrap(),
    );
    // The same after a restart (checkpoint + remaining WAL + blocks) and after cutting everything.
    drop(s);
    let s = MetricsStore::open(&c, Overrides::fixed(limits()), blocks.clone())
        .await
        .unwrap();
    check(
        s.select(&one("w"), &[name("m")], i64::MIN, i64::MAX)
            .await
            .unwrap(),
    );
    s.flush_all_to_blocks().await.unwrap();
    s.compact_all().await.unwrap();
    check(
        s.select(&one("w"), &[name("m")], i64::MIN, i64::MAX)
            .await
            .unwrap(),
    );
}

fn t_id() -> TenantId {
    t("w")
}

/// The borrowed form of a float-only batch, as the remote_write fast path builds it.
fn to_raw(b: &WriteBatch) -> RawWrite<'_> {
    let mut w = RawWrite::default();
    for s in &b.series {
        let l0 = w.labels.len() as u32;
        let s0 = w.samples.len() as u32;
        w.labels
            .extend(s.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())));
        w.samples.extend_from_slice(&s.samples);
        w.series.push(crate::model::RawSeries {
            labels: (l0, w.labels.len() as u32),
            samples: (s0, w.samples.len() as u32),
        });
    }
    w
}

#[tokio::test]
async fn write_raw_is_equivalent_to_write() {
    let limits = Limits {
        max_active_series: 40,
        out_of_order_time_window: CfgDuration::from_millis(20_000),
        ..Limits::default()
    };
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let blocks1 = BlockStore::in_memory();
    let blocks2 = BlockStore::in_memory();
    let s1 = open_with(d1.path(), &blocks1, limits.clone()).await;
    let s2 = open_with(d2.path(), &blocks2, limits.clone()).await;
    let a = t("a");
    let mut x = 0x1234_5678_9abc_def1u64;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for round in 0..200 {
        let n = rnd(12) as usize;
        let series = (0..n)
            .map(|_| {
                // 50 possible series: the active-series limit of 40 is hit now and then.
                let id = rnd(50);
                let samples: Vec<(i64, f64)> = (0..rnd(4))
                    .map(|_| {
                        let t = 1_000_000 + round * 10_000 + rnd(60) as i64 * 1_000 - 30_000;
                        let v = [1.0, 2.5, f64::from_bits(STALE_NAN_BITS), rnd(7) as f64]
                            [rnd(4) as usize];
                        (t, v)
                    })
                    .collect();
                sw(
                    lbl(&[("__name__", "m"), ("id", &id.to_string()), ("job", "j")]),
                    &samples,
                )
            })
            .collect();
        let b = batch(series);
        let r1 = s1.write(&a, b.clone()).await;
        let r2 = s2.write_raw(&a, &to_raw(&b)).await;
        match (r1, r2) {
            (Ok(o1), Ok(o2)) => assert_eq!(o1, o2, "round {round}"),
            (Err(e1), Err(e2)) => assert_eq!(e1.to_string(), e2.to_string()),
            (r1, r2) => panic!("round {round}: {r1:?} vs {r2:?}"),
        }
    }
    let all = [m(MatchOp::Regex, "__name__", ".+")];
    let q1 = s1
        .select(&one("a"), &all, i64::MIN, i64::MAX)
        .await
        .unwrap();
    let q2 = s2
        .select(&one("a"), &all, i64::MIN, i64::MAX)
        .await
        .unwrap();
    assert_eq!(norm(&q1), norm(&q2));
    assert_eq!(q1.len(), 40);
    // The fast path's WAL records replay to the same head.
    drop(s2);
    let s2 = open_with(d2.path(), &blocks2, limits).await;
    let q2 = s2
        .select(&one("a"), &all, i64::MIN, i64::MAX)
        .await
        .unwrap();
    assert_eq!(norm(&q1), norm(&q2));
}
