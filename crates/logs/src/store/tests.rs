use std::ops::ControlFlow;

use common::config::{Duration as CfgDuration, StorageConfig};
use common::limits::{Limits, Overrides};
use common::{Labels, MatchOp, Matcher, TenantId, TenantSet};
use storage::block::BlockStore;

use super::*;
use crate::model::{Entry, ScanRequest, StreamPush};

const S: i64 = 1_000_000_000;
/// 2025-01-01T00:00:00Z.
const T0: i64 = 1_735_689_600 * S;

fn cfg(dir: &std::path::Path) -> StorageConfig {
    StorageConfig {
        data_dir: dir.to_path_buf(),
        wal_fsync: false,
        ..StorageConfig::default()
    }
}

fn overrides(retention: CfgDuration) -> Overrides {
    Overrides::fixed(Limits {
        retention_period: retention,
        ..Limits::default()
    })
}

async fn open(dir: &std::path::Path, blocks: &BlockStore) -> LogStore {
    LogStore::open(&cfg(dir), overrides(CfgDuration::ZERO), blocks.clone())
        .await
        .unwrap()
}

async fn open_opts(dir: &std::path::Path, blocks: &BlockStore, opts: StoreOptions) -> LogStore {
    LogStore::open_with(
        &cfg(dir),
        overrides(CfgDuration::ZERO),
        blocks.clone(),
        opts,
    )
    .await
    .unwrap()
}

fn t(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn entry(ts: i64, line: &str) -> Entry {
    Entry {
        ts,
        line: line.to_string(),
        metadata: Vec::new(),
    }
}

fn push1(l: &Labels, entries: Vec<Entry>) -> Vec<StreamPush> {
    vec![StreamPush {
        labels: l.clone(),
        entries,
    }]
}

fn opts(window_s: i64) -> PushOptions {
    PushOptions {
        max_streams: 0,
        ooo_window_ns: window_s * S,
    }
}

fn req(tenants: TenantSet, matchers: Vec<Matcher>, start: i64, end: i64) -> ScanRequest {
    ScanRequest {
        tenants,
        matchers,
        start,
        end,
        required: Vec::new(),
    }
}

fn all(tenant: &str) -> ScanRequest {
    req(
        TenantSet::single(t(tenant)),
        vec![Matcher::new(MatchOp::Regex, "app", ".+").unwrap()],
        i64::MIN,
        i64::MAX,
    )
}

/// Scan result: (tenant, labels, ts, line, metadata) in sink order.
type Row = (String, String, i64, String, Vec<(String, String)>);

async fn scan(store: &LogStore, r: &ScanRequest) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut sink = |info: &StreamInfo, b: &Batch| {
        assert!(b.ts.windows(2).all(|w| w[0] <= w[1]), "batch not sorted");
        for i in 0..b.len() {
            rows.push((
                info.tenant.to_string(),
                info.labels.to_string(),
                b.ts[i],
                String::from_utf8(b.line(i).to_vec()).unwrap(),
                b.metadata(i)
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            ));
        }
        ControlFlow::Continue(())
    };
    store.scan(r, &mut sink).await.unwrap();
    rows
}

fn lines(rows: &[Row]) -> Vec<(i64, String)> {
    rows.iter().map(|r| (r.2, r.3.clone())).collect()
}

#[tokio::test]
async fn push_scan_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &BlockStore::in_memory()).await;
    let a = labels(&[("app", "a"), ("env", "prod")]);
    let b = labels(&[("app", "b")]);
    let out = store
        .push(
            &t("t1"),
            vec![
                StreamPush {
                    labels: a.clone(),
                    entries: vec![
                        Entry {
                            ts: T0 + 2,
                            line: "second".into(),
                            metadata: vec![("trace_id".into(), "abc".into())],
                        },
                        Entry {
                            ts: T0 + 1,
                            line: "first ünïcode".into(),
                            metadata: vec![
                                ("trace_id".into(), "abc".into()),
                                ("user".into(), "x".into()),
                            ],
                        },
                    ],
                },
                StreamPush {
                    labels: b.clone(),
                    entries: vec![entry(T0, "")],
                },
            ],
            &opts(3600),
        )
        .await
        .unwrap();
    assert_eq!(out.accepted_entries, 3);
    assert_eq!(out.accepted_bytes, 6 + "first ünïcode".len());
    assert!(out.rejected.is_empty());
    let rows = scan(&store, &all("t1")).await;
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].1, a.to_string());
    assert_eq!((rows[0].2, rows[0].3.as_str()), (T0 + 1, "first ünïcode"));
    assert_eq!(
        rows[0].4,
        vec![
            ("trace_id".to_string(), "abc".to_string()),
            ("user".to_string(), "x".to_string())
        ]
    );
    assert_eq!((rows[1].2, rows[1].3.as_str()), (T0 + 2, "second"));
    assert_eq!(rows[2].1, b.to_string());
    assert_eq!((rows[2].2, rows[2].3.as_str()), (T0, ""));
    assert!(rows[2].4.is_empty());
    let st = store.stats();
    assert_eq!(st.tenants[&t("t1")].streams, 2);
    assert_eq!(st.tenants[&t("t1")].head_entries, 3);
}

#[tokio::test]
async fn out_of_order_window_and_loki_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &BlockStore::in_memory()).await;
    let l = labels(&[("app", "a")]);
    store
        .push(
            &t("t1"),
            push1(&l, vec![entry(T0 + 100 * S, "new")]),
            &opts(10),
        )
        .await
        .unwrap();
    let out = store
        .push(
            &t("t1"),
            push1(
                &l,
                vec![
                    entry(T0 + 95 * S, "ok"),
                    entry(T0 + 80 * S, "too old"),
                    entry(T0 + 90 * S, "edge"),
                ],
            ),
            &opts(10),
        )
        .await
        .unwrap();
    assert_eq!(out.accepted_entries, 2);
    assert_eq!(
        out.rejected,
        vec![
            "entry too far behind, entry timestamp is: 2025-01-01T00:01:20Z, oldest acceptable timestamp is: 2025-01-01T00:01:30Z"
                .to_string()
        ]
    );
    assert_eq!(out.rejected_at, vec![(0, T0 + 80 * S)]);
    // Empty streams create nothing; positions refer to the request.
    let out = store
        .push(
            &t("t1"),
            vec![
                StreamPush {
                    labels: labels(&[("app", "empty")]),
                    entries: Vec::new(),
                },
                StreamPush {
                    labels: l.clone(),
                    entries: vec![entry(T0, "way too old")],
                },
            ],
            &opts(10),
        )
        .await
        .unwrap();
    assert_eq!(out.rejected_at, vec![(1, T0)]);
    assert_eq!(store.stats().tenants[&t("t1")].streams, 1);
    let rows = scan(&store, &all("t1")).await;
    assert_eq!(
        lines(&rows),
        vec![
            (T0 + 90 * S, "edge".to_string()),
            (T0 + 95 * S, "ok".to_string()),
            (T0 + 100 * S, "new".to_string())
        ]
    );
    // The window follows the newest entry within one push too.
    let out = store
        .push(
            &t("t1"),
            push1(
                &l,
                vec![entry(T0 + 200 * S, "jump"), entry(T0 + 101 * S, "late")],
            ),
            &opts(10),
        )
        .await
        .unwrap();
    assert_eq!((out.accepted_entries, out.rejected.len()), (1, 1));
}

#[tokio::test]
async fn duplicates_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &BlockStore::in_memory()).await;
    let l = labels(&[("app", "a")]);
    let out = store
        .push(
            &t("t1"),
            push1(&l, vec![entry(T0, "x"), entry(T0, "x"), entry(T0, "y")]),
            &opts(60),
        )
        .await
        .unwrap();
    assert_eq!((out.accepted_entries, out.duplicates), (2, 1));
    let out = store
        .push(&t("t1"), push1(&l, vec![entry(T0, "y")]), &opts(60))
        .await
        .unwrap();
    assert_eq!((out.accepted_entries, out.duplicates), (0, 1));
    // Same time and line but other metadata is not a duplicate.
    let out = store
        .push(
            &t("t1"),
            push1(
                &l,
                vec![Entry {
                    ts: T0,
                    line: "y".into(),
                    metadata: vec![("k".into(), "v".into())],
                }],
            ),
            &opts(60),
        )
        .await
        .unwrap();
    assert_eq!(out.accepted_entries, 1);
    assert_eq!(scan(&store, &all("t1")).await.len(), 3);
}

#[tokio::test]
async fn max_streams_refuses_whole_push() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let store = open(dir.path(), &blocks).await;
    let o = PushOptions {
        max_streams: 2,
        ooo_window_ns: 3600 * S,
    };
    store
        .push(
            &t("t1"),
            push1(&labels(&[("app", "a")]), vec![entry(T0, "a")]),
            &o,
        )
        .await
        .unwrap();
    let three: Vec<StreamPush> = ["a", "b", "c"]
        .iter()
        .map(|a| StreamPush {
            labels: labels(&[("app", a)]),
            entries: vec![entry(T0 + 1, "new")],
        })
        .collect();
    let err = store.push(&t("t1"), three, &o).await.unwrap_err();
    match &err {
        Error::Limit { status, msg } => {
            assert_eq!(*status, 429);
            assert!(msg.contains("max_streams"), "{msg}");
            assert!(msg.contains("t1"), "{msg}");
        }
        e => panic!("unexpected {e:?}"),
    }
    assert_eq!(err.status().as_u16(), 429);
    // Nothing was written, not even to the known stream.
    assert_eq!(
        lines(&scan(&store, &all("t1")).await),
        vec![(T0, "a".into())]
    );
    assert_eq!(store.stats().tenants[&t("t1")].streams, 1);
    drop(store);
    let store = open(dir.path(), &blocks).await;
    assert_eq!(scan(&store, &all("t1")).await.len(), 1);
    // One more stream fits.
    store
        .push(
            &t("t1"),
            push1(&labels(&[("app", "b")]), vec![entry(T0, "b")]),
            &o,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn wal_replay_after_crash() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let opts_small = StoreOptions {
        chunk_target_bytes: 64,
        ..StoreOptions::default()
    };
    let store = open_opts(dir.path(), &blocks, opts_small.clone()).await;
    let l = labels(&[("app", "a")]);
    let mut expected = Vec::new();
    for i in 0..50 {
        let ts = T0 + (i % 7) * S + i;
        let line = format!("line {i} with some padding to fill chunks");
        expected.push((ts, line.clone()));
        store
            .push(
                &t("t1"),
                push1(
                    &l,
                    vec![Entry {
                        ts,
                        line,
                        metadata: vec![("i".into(), i.to_string())],
                    }],
                ),
                &opts(3600),
            )
            .await
            .unwrap();
    }
    expected.sort();
    let before = scan(&store, &all("t1")).await;
    assert_eq!(lines(&before), expected);
    // Drop without close: a crash.
    drop(store);
    let store = open_opts(dir.path(), &blocks, opts_small).await;
    let after = scan(&store, &all("t1")).await;
    assert_eq!(after, before);
    // Validation state was rebuilt too.
    let out = store
        .push(
            &t("t1"),
            push1(&l, vec![entry(T0 - 7200 * S, "old")]),
            &opts(3600),
        )
        .await
        .unwrap();
    assert_eq!(out.rejected.len(), 1);
}

#[tokio::test]
async fn blocks_cut_and_read_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let blocks_dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.object_store.path = Some(blocks_dir.path().to_path_buf());
    let blocks = BlockStore::from_config(&c).unwrap();
    let small = StoreOptions {
        chunk_target_bytes: 100,
        ..StoreOptions::default()
    };
    let store = open_opts(dir.path(), &blocks, small.clone()).await;
    let a = labels(&[("app", "a")]);
    let b = labels(&[("app", "b")]);
    for i in 0..40 {
        store
            .push(
                &t("t1"),
                vec![
                    StreamPush {
                        labels: a.clone(),
                        entries: vec![entry(T0 + i * S, &format!("a{i} padding padding"))],
                    },
                    StreamPush {
                        labels: b.clone(),
                        entries: vec![entry(T0 + i * S, &format!("b{i}"))],
                    },
                ],
                &opts(3600),
            )
            .await
            .unwrap();
    }
    let before = scan(&store, &all("t1")).await;
    assert_eq!(before.len(), 80);
    store.flush_all_to_blocks().await.unwrap();
    let st = store.stats();
    assert_eq!(st.tenants[&t("t1")].blocks, 1);
    assert_eq!(st.tenants[&t("t1")].block_entries, 80);
    assert_eq!(st.tenants[&t("t1")].head_entries, 0);
    assert_eq!(scan(&store, &all("t1")).await, before);
    // Out-of-order entries after the cut overlap the block: the scan merges them in time order.
    store
        .push(
            &t("t1"),
            push1(
                &a,
                vec![entry(T0 + 5 * S + 1, "late"), entry(T0 + 50 * S, "after")],
            ),
            &opts(3600),
        )
        .await
        .unwrap();
    let rows = scan(&store, &all("t1")).await;
    assert_eq!(rows.len(), 82);
    let a_rows: Vec<_> = rows.iter().filter(|r| r.1 == a.to_string()).collect();
    assert!(a_rows.windows(2).all(|w| w[0].2 <= w[1].2));
    assert_eq!(a_rows[6].3, "late");
    let expected = scan(&store, &all("t1")).await;
    drop(store);
    // Reopen: the WAL holds only what came after the cut.
    let store = open_opts(dir.path(), &blocks, small.clone()).await;
    assert_eq!(scan(&store, &all("t1")).await, expected);
    store.close().await.unwrap();
    // An empty node with the same bucket serves the block.
    let empty = tempfile::tempdir().unwrap();
    let store = open_opts(empty.path(), &blocks, small).await;
    assert_eq!(scan(&store, &all("t1")).await, before);
    let st = store
        .streams(
            &TenantSet::single(t("t1")),
            &[Matcher::equal("app", "a")],
            T0,
            T0 + 10 * S,
        )
        .await
        .unwrap();
    assert_eq!(st.len(), 1);
    assert!(st[0].entries >= 10);
    assert!(st[0].bytes > 0 && st[0].chunks > 0);
}

#[tokio::test]
async fn replay_skips_segments_already_in_a_block() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let store = open(dir.path(), &blocks).await;
    let l = labels(&[("app", "a")]);
    store
        .push(&t("t1"), push1(&l, vec![entry(T0, "x")]), &opts(60))
        .await
        .unwrap();
    let db = store.tenant_db(&t("t1")).unwrap();
    // Simulate a crash between the upload and the WAL truncation: save the segments, cut, then
    // put the deleted segments back.
    let wal_dir = dir.path().join("t1").join(SIGNAL).join("wal");
    let saved: Vec<(std::path::PathBuf, Vec<u8>)> = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    store.flush_all_to_blocks().await.unwrap();
    for (p, data) in &saved {
        if !p.exists() {
            std::fs::write(p, data).unwrap();
        }
    }
    let metas = store.block_list(&t("t1"), true).await.unwrap();
    assert_eq!(metas[0].stats["wal_id"].as_str(), Some(db.wal_id.as_str()));
    assert!(stat(&metas[0], "wal_segment") >= 1);
    drop(db);
    drop(store);
    let store = open(dir.path(), &blocks).await;
    assert_eq!(scan(&store, &all("t1")).await.len(), 1);
}

#[tokio::test]
async fn retention_deletes_old_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let store = LogStore::open(
        &cfg(dir.path()),
        overrides(CfgDuration::from_secs(3600)),
        blocks.clone(),
    )
    .await
    .unwrap();
    let l = labels(&[("app", "a")]);
    store
        .push(&t("t1"), push1(&l, vec![entry(T0, "old")]), &opts(60))
        .await
        .unwrap();
    store.flush_all_to_blocks().await.unwrap();
    store
        .push(
            &t("t1"),
            push1(&l, vec![entry(T0 + 3 * 3600 * S, "new")]),
            &opts(60),
        )
        .await
        .unwrap();
    store.flush_all_to_blocks().await.unwrap();
    assert_eq!(store.stats().tenants[&t("t1")].blocks, 2);
    store.maintenance(T0 + 3 * 3600 * S).await.unwrap();
    assert_eq!(store.stats().tenants[&t("t1")].blocks, 1);
    assert_eq!(
        lines(&scan(&store, &all("t1")).await),
        vec![(T0 + 3 * 3600 * S, "new".into())]
    );
    assert_eq!(blocks.list_blocks(&t("t1"), SIGNAL).await.unwrap().len(), 1);
}

#[tokio::test]
async fn maintenance_cuts_by_age_and_seals_old_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let store = open(dir.path(), &blocks).await;
    let l = labels(&[("app", "a")]);
    store
        .push(&t("t1"), push1(&l, vec![entry(T0, "x")]), &opts(60))
        .await
        .unwrap();
    store.maintenance(now_ns()).await.unwrap();
    assert_eq!(store.stats().tenants[&t("t1")].blocks, 0);
    store.maintenance(now_ns() + 3 * 3600 * S).await.unwrap();
    let st = store.stats();
    assert_eq!(st.tenants[&t("t1")].blocks, 1);
    assert_eq!(st.tenants[&t("t1")].head_entries, 0);
    assert_eq!(scan(&store, &all("t1")).await.len(), 1);
}

#[tokio::test]
async fn tenant_isolation_and_federation() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &BlockStore::in_memory()).await;
    let l = labels(&[("app", "a")]);
    store
        .push(&t("t1"), push1(&l, vec![entry(T0, "one")]), &opts(60))
        .await
        .unwrap();
    store.flush_all_to_blocks().await.unwrap();
    store
        .push(&t("t2"), push1(&l, vec![entry(T0 + 1, "two")]), &opts(60))
        .await
        .unwrap();
    let r1 = scan(&store, &all("t1")).await;
    assert_eq!(lines(&r1), vec![(T0, "one".into())]);
    assert_eq!(r1[0].0, "t1");
    let r2 = scan(&store, &all("t2")).await;
    assert_eq!(lines(&r2), vec![(T0 + 1, "two".into())]);
    assert!(scan(&store, &all("t3")).await.is_empty());
    let fed = TenantSet::parse("t1|t2").unwrap();
    let m = vec![Matcher::equal("app", "a")];
    let rows = scan(&store, &req(fed.clone(), m.clone(), T0, T0 + S)).await;
    let mut got: Vec<_> = rows.iter().map(|r| (r.0.clone(), r.3.clone())).collect();
    got.sort();
    assert_eq!(
        got,
        vec![("t1".into(), "one".into()), ("t2".into(), "two".into())]
    );
    // A matcher on __tenant_id__ selects tenants.
    let mut m2 = m.clone();
    m2.push(Matcher::equal("__tenant_id__", "t2"));
    let rows = scan(&store, &req(fed.clone(), m2.clone(), T0, T0 + S)).await;
    assert_eq!(lines(&rows), vec![(T0 + 1, "two".into())]);
    let st = store.streams(&fed, &m, T0, T0 + S).await.unwrap();
    let mut tenants: Vec<String> = st.iter().map(|s| s.info.tenant.to_string()).collect();
    tenants.sort();
    assert_eq!(tenants, vec!["t1", "t2"]);
    assert_eq!(
        store
            .streams(&TenantSet::single(t("t2")), &m, T0, T0 + S)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn end_is_exclusive_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let small = StoreOptions {
        chunk_target_bytes: 2,
        ..StoreOptions::default()
    };
    let store = open_opts(dir.path(), &BlockStore::in_memory(), small).await;
    let l = labels(&[("app", "a")]);
    let check = |rows: Vec<Row>| {
        assert_eq!(
            lines(&rows),
            vec![(T0 + 10, "a".to_string()), (T0 + 20, "b".to_string())]
        )
    };
    store
        .push(
            &t("t1"),
            push1(
                &l,
                vec![
                    entry(T0 + 10, "a"),
                    entry(T0 + 20, "b"),
                    entry(T0 + 30, "c"),
                ],
            ),
            &opts(60),
        )
        .await
        .unwrap();
    let r = req(
        TenantSet::single(t("t1")),
        vec![Matcher::equal("app", "a")],
        T0 + 10,
        T0 + 30,
    );
    // Sealed chunks in the head.
    check(scan(&store, &r).await);
    store.flush_all_to_blocks().await.unwrap();
    // From the block.
    check(scan(&store, &r).await);
    // Open chunk in the head (default options: nothing sealed).
    let dir2 = tempfile::tempdir().unwrap();
    let store2 = open(dir2.path(), &BlockStore::in_memory()).await;
    store2
        .push(
            &t("t1"),
            push1(
                &l,
                vec![
                    entry(T0 + 30, "c"),
                    entry(T0 + 10, "a"),
                    entry(T0 + 20, "b"),
                ],
            ),
            &opts(60),
        )
        .await
        .unwrap();
    check(scan(&store2, &r).await);
    let st = store2
        .streams(
            &TenantSet::single(t("t1")),
            &[Matcher::equal("app", "a")],
            T0 + 31,
            T0 + 40,
        )
        .await
        .unwrap();
    assert!(st.is_empty());
    let st = store2
        .streams(
            &TenantSet::single(t("t1")),
            &[Matcher::equal("app", "a")],
            T0,
            T0 + 10,
        )
        .await
        .unwrap();
    assert!(st.is_empty());
}

#[tokio::test]
async fn matchers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &BlockStore::in_memory()).await;
    for (app, env) in [("api", "prod"), ("web", "prod"), ("db", "dev")] {
        store
            .push(
                &t("t1"),
                push1(&labels(&[("app", app), ("env", env)]), vec![entry(T0, app)]),
                &opts(60),
            )
            .await
            .unwrap();
    }
    store
        .push(
            &t("t1"),
            push1(&labels(&[("app", "solo")]), vec![entry(T0, "solo")]),
            &opts(60),
        )
        .await
        .unwrap();
    let run = |ms: Vec<Matcher>| {
        let store = store.clone();
        async move {
            let mut got: Vec<String> =
                scan(&store, &req(TenantSet::single(t("t1")), ms, T0, T0 + 1))
                    .await
                    .into_iter()
                    .map(|r| r.3)
                    .collect();
            got.sort();
            got
        }
    };
    let m = |op, n: &str, v: &str| Matcher::new(op, n, v).unwrap();
    assert_eq!(
        run(vec![m(MatchOp::Equal, "env", "prod")]).await,
        ["api", "web"]
    );
    assert_eq!(
        run(vec![
            m(MatchOp::Regex, "app", ".+"),
            m(MatchOp::NotEqual, "env", "prod")
        ])
        .await,
        ["db", "solo"]
    );
    assert_eq!(
        run(vec![m(MatchOp::Regex, "app", "a.*|d.")]).await,
        ["api", "db"]
    );
    assert_eq!(
        run(vec![
            m(MatchOp::Regex, "app", ".+"),
            m(MatchOp::NotRegex, "env", "pr.*")
        ])
        .await,
        ["db", "solo"]
    );
    // The same from a block.
    store.flush_all_to_blocks().await.unwrap();
    assert_eq!(
        run(vec![m(MatchOp::Equal, "env", "prod")]).await,
        ["api", "web"]
    );
    assert_eq!(
        run(vec![
            m(MatchOp::Regex, "app", ".+"),
            m(MatchOp::NotRegex, "env", "pr.*")
        ])
        .await,
        ["db", "solo"]
    );
}

#[tokio::test]
async fn required_substrings_never_hide_lines() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &BlockStore::in_memory()).await;
    let l = labels(&[("app", "a")]);
    let entries: Vec<Entry> = (0..100)
        .map(|i| {
            entry(
                T0 + i,
                &if i % 10 == 3 {
                    format!("x needle {i}")
                } else {
                    format!("hay {i}")
                },
            )
        })
        .collect();
    store
        .push(&t("t1"), push1(&l, entries), &opts(60))
        .await
        .unwrap();
    let mut r = all("t1");
    r.required = vec![b"needle".to_vec()];
    for flush in [false, true] {
        if flush {
            store.flush_all_to_blocks().await.unwrap();
        }
        let rows = scan(&store, &r).await;
        assert_eq!(rows.iter().filter(|r| r.3.contains("needle")).count(), 10);
    }
}

#[tokio::test]
async fn break_stops_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &BlockStore::in_memory()).await;
    for app in ["a", "b", "c"] {
        store
            .push(
                &t("t1"),
                push1(&labels(&[("app", app)]), vec![entry(T0, app)]),
                &opts(60),
            )
            .await
            .unwrap();
    }
    store.flush_all_to_blocks().await.unwrap();
    store
        .push(
            &t("t2"),
            push1(&labels(&[("app", "d")]), vec![entry(T0, "d")]),
            &opts(60),
        )
        .await
        .unwrap();
    let mut calls = 0;
    let mut sink = |_: &StreamInfo, _: &Batch| {
        calls += 1;
        ControlFlow::Break(())
    };
    let mut r = all("t1");
    r.tenants = TenantSet::parse("t1|t2").unwrap();
    let stats = store.scan(&r, &mut sink).await.unwrap();
    assert_eq!(calls, 1);
    assert_eq!(stats.entries, 1);
    let mut calls = 0;
    let mut sink = |_: &StreamInfo, _: &Batch| {
        calls += 1;
        ControlFlow::Continue(())
    };
    let stats = store.scan(&r, &mut sink).await.unwrap();
    assert_eq!((calls, stats.entries), (4, 4));
    assert!(stats.chunks >= 3);
}

#[tokio::test]
async fn concurrent_pushes_and_out_of_order_chunks_scan_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let small = StoreOptions {
        chunk_target_bytes: 300,
        ..StoreOptions::default()
    };
    let store = open_opts(dir.path(), &BlockStore::in_memory(), small).await;
    let l = labels(&[("app", "a")]);
    let mut tasks = Vec::new();
    for w in 0..4i64 {
        let store = store.clone();
        let l = l.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50i64 {
                let ts = T0 + ((i * 7919 + w * 13) % 400) * S + w;
                store
                    .push(
                        &t("t1"),
                        push1(&l, vec![entry(ts, &format!("w{w} i{i}"))]),
                        &opts(3600),
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rows = scan(&store, &all("t1")).await;
    assert_eq!(rows.len(), 200);
    assert!(rows.windows(2).all(|w| w[0].2 <= w[1].2));
    store.flush_all_to_blocks().await.unwrap();
    let rows2 = scan(&store, &all("t1")).await;
    assert_eq!(lines(&rows2).len(), 200);
    assert!(rows2.windows(2).all(|w| w[0].2 <= w[1].2));
}

/// Ingest and scan figures on synthetic logfmt lines (not asserted; run with
/// `cargo test --release -p logs --lib store::tests::bench_ -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_ingest_and_scan() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let store = open(dir.path(), &blocks).await;
    let streams = 50usize;
    let per_push = 1000usize;
    let pushes = 400usize;
    let paths = [
        "/api/v1/users",
        "/api/v1/orders",
        "/healthz",
        "/api/v2/search",
        "/static/app.js",
    ];
    let levels = ["info", "info", "info", "debug", "warn", "error"];
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut batches = Vec::with_capacity(pushes);
    let mut raw = 0usize;
    let mut ts = T0;
    for p in 0..pushes {
        let mut sp = Vec::new();
        let s = p % streams;
        let mut entries = Vec::with_capacity(per_push);
        for _ in 0..per_push {
            ts += 1_000_000 + (next() % 1_000_000) as i64;
            let r = next();
            let line = format!(
                "ts={} level={} caller=handler.go:{} msg=\"request handled\" method={} path={}/{} status={} duration_ms={}.{} bytes={} trace_id={:016x} user_agent=\"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\"",
                rfc3339(ts),
                levels[(r % 6) as usize],
                100 + r % 50,
                if r % 5 == 0 { "POST" } else { "GET" },
                paths[(r >> 8) as usize % 5],
                (r >> 16) % 100_000,
                if r % 17 == 0 { 500 } else { 200 },
                (r >> 24) % 300,
                (r >> 32) % 10,
                (r >> 36) % 50_000,
                next(),
            );
            raw += line.len();
            entries.push(Entry {
                ts,
                line,
                metadata: Vec::new(),
            });
        }
        sp.push(StreamPush {
            labels: labels(&[("app", "bench"), ("pod", &format!("pod-{s}"))]),
            entries,
        });
        batches.push(sp);
    }
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    let chunks: Vec<Vec<Vec<StreamPush>>> = {
        let mut c = vec![Vec::new(), Vec::new()];
        for (i, b) in batches.into_iter().enumerate() {
            c[i % 2].push(b);
        }
        c
    };
    for part in chunks {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for b in part {
                store.push(&t("bench"), b, &opts(7200)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let ingest = started.elapsed();
    let started = std::time::Instant::now();
    store.flush_all_to_blocks().await.unwrap();
    let flush = started.elapsed();
    let st = store.stats().tenants[&t("bench")].clone();
    println!(
        "ingest: {:.1} MB raw in {:?} = {:.1} MB/s (2 writers); flush {:?}; block {} bytes, ratio {:.1}x",
        raw as f64 / 1e6,
        ingest,
        raw as f64 / 1e6 / ingest.as_secs_f64(),
        flush,
        st.block_bytes,
        raw as f64 / st.block_bytes as f64
    );
    {
        let started = std::time::Instant::now();
        let mut sink = |_: &StreamInfo, _: &Batch| ControlFlow::Continue(());
        let s = store.scan(&all("bench"), &mut sink).await.unwrap();
        let el = started.elapsed();
        println!(
            "scan, no-op sink: {:.1} MB in {:?} = {:.2} GB/s",
            s.bytes as f64 / 1e6,
            el,
            s.bytes as f64 / 1e9 / el.as_secs_f64()
        );
    }
    let finder = memchr::memmem::Finder::new(b"needle");
    for round in 0..3 {
        let started = std::time::Instant::now();
        let mut hits = 0usize;
        let mut sink = |_: &StreamInfo, b: &Batch| {
            hits += finder.find_iter(&b.lines).count();
            ControlFlow::Continue(())
        };
        let mut r = all("bench");
        r.required = vec![b"needle".to_vec()];
        let s = store.scan(&r, &mut sink).await.unwrap();
        let el = started.elapsed();
        println!(
            "scan {round}: {} entries, {:.1} MB in {:?} = {:.2} GB/s (1 core), chunks {}, hits {hits}",
            s.entries,
            s.bytes as f64 / 1e6,
            el,
            s.bytes as f64 / 1e9 / el.as_secs_f64(),
            s.chunks
        );
    }
}

/// Compression ratio of sealed chunks over the lines of a log file per zstd level and chunk size
/// (`HEIMDALL_BENCH_LOG=/var/log/dpkg.log cargo test --release -p logs --lib
/// store::tests::bench_chunk_ratio -- --ignored --nocapture`).
#[test]
#[ignore]
fn bench_chunk_ratio() {
    let Ok(path) = std::env::var("HEIMDALL_BENCH_LOG") else {
        return;
    };
    let text = std::fs::read_to_string(path).unwrap();
    for chunk_kb in [256usize, 1024] {
        for level in [1, 3, 6, 9] {
            let (mut raw, mut comp) = (0usize, 0usize);
            let started = std::time::Instant::now();
            let mut b = Batch::default();
            let mut ts = T0;
            for line in text.lines() {
                ts += 1_000_000;
                b.push(
                    ts,
                    line.as_bytes(),
                    std::iter::empty::<(Arc<str>, Arc<str>)>(),
                );
                if b.lines.len() >= chunk_kb << 10 {
                    comp += codec::encode_chunk(&b, level).unwrap().0.len();
                    raw += b.lines.len();
                    b.clear();
                }
            }
            if !b.is_empty() {
                comp += codec::encode_chunk(&b, level).unwrap().0.len();
                raw += b.lines.len();
            }
            println!(
                "chunk {chunk_kb} KiB level {level}: ratio {:.1}x, {:.0} MB/s",
                raw as f64 / comp as f64,
                raw as f64 / 1e6 / started.elapsed().as_secs_f64()
            );
        }
    }
}

#[tokio::test]
async fn failed_wal_write_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &BlockStore::in_memory()).await;
    let l = labels(&[("app", "a")]);
    store
        .push(&t("t1"), push1(&l, vec![entry(T0, "first")]), &opts(10))
        .await
        .unwrap();
    let db = store.tenant_db(&t("t1")).unwrap();
    db.wal.close().unwrap();
    let err = store
        .push(
            &t("t1"),
            push1(&l, vec![entry(T0 + 3600 * S, "lost")]),
            &opts(10),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Storage(_)), "{err:?}");
    // Not visible, and the stream's validation state is as before (a retry is judged afresh).
    assert_eq!(
        lines(&scan(&store, &all("t1")).await),
        vec![(T0, "first".into())]
    );
    let s = db.head.streams();
    let st = s[0].state.lock();
    assert_eq!(st.highest_ts, T0);
    assert!(st.is_duplicate(&entry(T0, "first")));
}

#[tokio::test]
async fn compaction_merges_small_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let store = open(dir.path(), &blocks).await;
    let a = labels(&[("app", "a")]);
    let b = labels(&[("app", "b")]);
    // Three small blocks; the third overlaps the first in time (out-of-order entries).
    for (i, ts) in [(0i64, T0), (1, T0 + 100 * S), (2, T0 + 50 * S)] {
        store
            .push(
                &t("t1"),
                vec![
                    StreamPush {
                        labels: a.clone(),
                        entries: vec![
                            entry(ts, &format!("a{i}")),
                            entry(ts + S, &format!("a{i}'")),
                        ],
                    },
                    StreamPush {
                        labels: b.clone(),
                        entries: vec![entry(ts + 2, &format!("b{i}"))],
                    },
                ],
                &opts(3600),
            )
            .await
            .unwrap();
        store.flush_all_to_blocks().await.unwrap();
    }
    let before = scan(&store, &all("t1")).await;
    assert_eq!(before.len(), 9);
    let metas = blocks.list_blocks(&t("t1"), SIGNAL).await.unwrap();
    assert_eq!(metas.len(), 3);
    let wal_seg = metas.iter().map(|m| stat(m, "wal_segment")).max().unwrap();
    store.maintenance(now_ns()).await.unwrap();
    let st = store.stats();
    assert_eq!(st.tenants[&t("t1")].blocks, 1);
    assert_eq!(st.tenants[&t("t1")].block_entries, 9);
    assert_eq!(scan(&store, &all("t1")).await, before);
    // The sources stay (hidden) for a grace period, then go.
    assert_eq!(blocks.list_blocks(&t("t1"), SIGNAL).await.unwrap().len(), 4);
    // Another node (fresh list) sees only the merged block.
    let other = tempfile::tempdir().unwrap();
    let node2 = open(other.path(), &blocks).await;
    assert_eq!(scan(&node2, &all("t1")).await, before);
    store.maintenance(now_ns() + 10 * 60 * S).await.unwrap();
    let metas = blocks.list_blocks(&t("t1"), SIGNAL).await.unwrap();
    assert_eq!(metas.len(), 1);
    assert_eq!(metas[0].level, 2);
    assert_eq!(metas[0].sources.len(), 3);
    assert_eq!(stat(&metas[0], "wal_segment"), wal_seg);
    assert_eq!(scan(&store, &all("t1")).await, before);
    drop(store);
    let store = open(dir.path(), &blocks).await;
    assert_eq!(scan(&store, &all("t1")).await, before);
}

/// Scans racing pushes and block cuts see every acknowledged entry exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_during_cuts_see_each_entry_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let small = StoreOptions {
        chunk_target_bytes: 200,
        ..StoreOptions::default()
    };
    let store = open_opts(dir.path(), &BlockStore::in_memory(), small).await;
    let acked = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (store, acked) = (store.clone(), acked.clone());
        tokio::spawn(async move {
            for i in 0..300i64 {
                let l = labels(&[("app", if i % 2 == 0 { "a" } else { "b" })]);
                // Out of order within a window, so that chunks and blocks overlap.
                let ts = T0 + (i % 13) * S + i;
                store
                    .push(
                        &t("t1"),
                        push1(&l, vec![entry(ts, &format!("line {i}"))]),
                        &opts(3600),
                    )
                    .await
                    .unwrap();
                acked.fetch_add(1, Ordering::SeqCst);
                if i % 25 == 24 {
                    store.flush_all_to_blocks().await.unwrap();
                }
            }
        })
    };
    let mut scans = 0;
    while !writer.is_finished() || scans < 5 {
        let lo = acked.load(Ordering::SeqCst);
        let rows = scan(&store, &all("t1")).await;
        let hi = acked.load(Ordering::SeqCst);
        let distinct: std::collections::HashSet<&String> = rows.iter().map(|r| &r.3).collect();
        assert_eq!(distinct.len(), rows.len(), "duplicate entries in a scan");
        // The one push in flight may be visible before the writer counts it.
        assert!(
            rows.len() >= lo && rows.len() <= hi + 1,
            "{lo} <= {} <= {hi} + 1",
            rows.len()
        );
        for s in [&"a", &"b"] {
            let ts: Vec<i64> = rows
                .iter()
                .filter(|r| r.1.contains(&format!("\"{s}\"")))
                .map(|r| r.2)
                .collect();
            assert!(ts.windows(2).all(|w| w[0] <= w[1]));
        }
        scans += 1;
    }
    writer.await.unwrap();
    assert_eq!(scan(&store, &all("t1")).await.len(), 300);
}

#[tokio::test]
async fn failed_upload_keeps_data_and_retries() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let root = bucket.path().join("blocks");
    std::fs::create_dir(&root).unwrap();
    let mut c = cfg(dir.path());
    c.object_store.path = Some(root.clone());
    let blocks = BlockStore::from_config(&c).unwrap();
    let store = open(dir.path(), &blocks).await;
    let l = labels(&[("app", "a")]);
    store
        .push(
            &t("t1"),
            push1(&l, vec![entry(T0, "x"), entry(T0 + 1, "y")]),
            &opts(60),
        )
        .await
        .unwrap();
    // Break the bucket: its root becomes a file.
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::write(&root, b"not a folder").unwrap();
    assert!(store.flush_all_to_blocks().await.is_err());
    assert_eq!(scan(&store, &all("t1")).await.len(), 2);
    store
        .push(&t("t1"), push1(&l, vec![entry(T0 + 2, "z")]), &opts(60))
        .await
        .unwrap();
    assert_eq!(scan(&store, &all("t1")).await.len(), 3);
    // Repair and retry: one block with everything, nothing twice.
    std::fs::remove_file(&root).unwrap();
    std::fs::create_dir(&root).unwrap();
    store.maintenance(now_ns() + 3 * 3600 * S).await.unwrap();
    let st = store.stats();
    assert_eq!(st.tenants[&t("t1")].blocks, 1);
    assert_eq!(st.tenants[&t("t1")].block_entries, 3);
    assert_eq!(st.tenants[&t("t1")].head_entries, 0);
    let rows = scan(&store, &all("t1")).await;
    assert_eq!(lines(&rows).len(), 3);
    drop(store);
    let store = open(dir.path(), &blocks).await;
    assert_eq!(scan(&store, &all("t1")).await, rows);
}
