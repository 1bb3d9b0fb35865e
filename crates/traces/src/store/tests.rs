use std::ops::ControlFlow;
use std::sync::Arc;

use common::config::{Duration as CfgDuration, StorageConfig};
use common::limits::{Limits, Overrides};
use common::{TenantId, TenantSet};
use proto::otlp::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use proto::otlp::tonic::resource::v1::Resource;
use proto::otlp::tonic::trace::v1::span::{Event, Link};
use storage::block::BlockStore;

use super::*;
use crate::model::{PushLimits, Span, SpanId, SpanOrigin, Trace, TraceScan};

const S: u64 = 1_000_000_000;
/// 2025-01-01T00:00:00Z.
const T0: u64 = 1_735_689_600 * S;

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

async fn open(dir: &std::path::Path, blocks: &BlockStore) -> TraceStore {
    TraceStore::open(&cfg(dir), overrides(CfgDuration::ZERO), blocks.clone())
        .await
        .unwrap()
}

async fn open_opts(dir: &std::path::Path, blocks: &BlockStore, opts: StoreOptions) -> TraceStore {
    TraceStore::open_with(
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

fn ts(s: &str) -> TenantSet {
    TenantSet::single(t(s))
}

fn sv(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

fn kv(k: &str, v: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v,
        ..Default::default()
    }
}

fn origin(service: &str) -> Arc<SpanOrigin> {
    Arc::new(SpanOrigin {
        resource: Resource {
            attributes: vec![kv("service.name", sv(service)), kv("host.name", sv("h1"))],
            ..Default::default()
        },
        ..Default::default()
    })
}

fn tid(n: u64) -> TraceId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    id[8..].copy_from_slice(&n.to_be_bytes());
    id
}

fn span(trace: u64, n: u64, start: u64, o: &Arc<SpanOrigin>, name: &str) -> Span {
    Span {
        trace_id: tid(trace),
        span_id: (trace * 1000 + n + 1).to_be_bytes(),
        parent_span_id: if n == 0 {
            [0; 8]
        } else {
            (trace * 1000 + 1).to_be_bytes()
        },
        trace_state: String::new(),
        flags: 0,
        name: name.into(),
        kind: 2,
        start_ns: start,
        end_ns: start + 1000 + n,
        attributes: vec![kv("http.method", sv("GET")), kv("n", sv(&n.to_string()))],
        dropped_attributes_count: 0,
        events: Vec::new(),
        dropped_events_count: 0,
        links: Vec::new(),
        dropped_links_count: 0,
        status_code: 0,
        status_message: String::new(),
        origin: o.clone(),
    }
}

fn no_limit() -> PushLimits {
    PushLimits::default()
}

fn sorted(mut v: Vec<Span>) -> Vec<Span> {
    v.sort_by_key(|a| (a.start_ns, a.span_id));
    v
}

fn scan_req(tenants: TenantSet, start: u64, end: u64) -> TraceScan {
    TraceScan {
        tenants: Some(tenants),
        start_ns: start,
        end_ns: end,
        ..Default::default()
    }
}

async fn scan(store: &TraceStore, req: &TraceScan) -> Vec<(String, Trace)> {
    let mut out = Vec::new();
    let mut sink = |tenant: &TenantId, tr: &Trace| {
        out.push((tenant.to_string(), tr.clone()));
        ControlFlow::Continue(())
    };
    store.scan(req, &mut sink).await.unwrap();
    out
}

async fn get(store: &TraceStore, tenant: &str, id: TraceId) -> Option<Trace> {
    store
        .trace_by_id(&ts(tenant), id, 0, u64::MAX)
        .await
        .unwrap()
}

/// A span using every field and every `AnyValue` kind.
fn rich_span() -> Span {
    let any = |v| Some(AnyValue { value: Some(v) });
    let all_kinds = vec![
        kv("s", sv("str")),
        kv("b", any(any_value::Value::BoolValue(true))),
        kv("i", any(any_value::Value::IntValue(-42))),
        kv("d", any(any_value::Value::DoubleValue(1.5))),
        kv("bytes", any(any_value::Value::BytesValue(vec![0, 1, 255]))),
        kv(
            "arr",
            any(any_value::Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(any_value::Value::IntValue(1)),
                }],
            })),
        ),
        kv(
            "kvl",
            any(any_value::Value::KvlistValue(KeyValueList {
                values: vec![kv("inner", sv("x"))],
            })),
        ),
        kv("none", None),
        kv("empty", Some(AnyValue { value: None })),
    ];
    let mut attributes = vec![kv("http.route", sv("/users/:id"))];
    attributes.extend(all_kinds.clone());
    attributes.push(kv("http.method", sv("POST")));
    attributes.push(kv("http.status_code", any(any_value::Value::IntValue(503))));
    // A second http.method and a string status code stay in the generic blob.
    attributes.push(kv("http.method", sv("PUT")));
    attributes.push(kv("http.url", sv("https://x/users/1")));
    let o = Arc::new(SpanOrigin {
        resource: Resource {
            attributes: vec![
                kv("service.name", sv("checkout")),
                kv("k8s.namespace.name", sv("prod")),
                kv("k8s.pod.name", sv("checkout-1")),
                kv("weird", any(any_value::Value::IntValue(7))),
            ],
            dropped_attributes_count: 2,
            ..Default::default()
        },
        resource_schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
        scope: InstrumentationScope {
            name: "io.opentelemetry.http".into(),
            version: "1.2.3".into(),
            attributes: vec![kv("scope.attr", sv("v"))],
            dropped_attributes_count: 1,
        },
        scope_schema_url: "https://scope".into(),
    });
    Span {
        trace_id: [7; 16],
        span_id: [1, 2, 3, 4, 5, 6, 7, 8],
        parent_span_id: [9; 8],
        trace_state: "vendor=a".into(),
        flags: 0x301,
        name: "POST /users".into(),
        kind: 3,
        start_ns: T0 + 5,
        end_ns: T0 + 5 + 123_456_789,
        attributes,
        dropped_attributes_count: 3,
        events: vec![Event {
            time_unix_nano: T0 + 10,
            name: "exception".into(),
            attributes: all_kinds.clone(),
            dropped_attributes_count: 4,
        }],
        dropped_events_count: 5,
        links: vec![Link {
            trace_id: vec![3; 16],
            span_id: vec![4; 8],
            trace_state: "l=1".into(),
            attributes: all_kinds,
            dropped_attributes_count: 6,
            flags: 0x100,
        }],
        dropped_links_count: 7,
        status_code: 2,
        status_message: "boom".into(),
        origin: o,
    }
}

#[tokio::test]
async fn round_trip_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let store = open(dir.path(), &blocks).await;
    let a = t("a");
    let rich = rich_span();
    let mut second = rich.clone();
    second.span_id = [2; 8];
    second.start_ns += 1;
    second.end_ns = second.start_ns.saturating_sub(10); // end before start survives too
    second.kind = 77;
    second.status_code = -1;
    second.attributes.clear();
    let plain = span(1, 0, T0, &origin("other"), "plain");
    let r = store
        .push(
            &a,
            vec![rich.clone(), second.clone(), plain.clone()],
            &no_limit(),
        )
        .await
        .unwrap();
    assert_eq!((r.accepted, r.rejected), (3, 0));
    let want = sorted(vec![rich.clone(), second.clone()]);
    let got = get(&store, "a", [7; 16]).await.unwrap();
    assert_eq!(got.spans, want, "from the head");

    store.flush_all_to_blocks().await.unwrap();
    assert_eq!(store.stats().tenants[&a].blocks, 1);
    assert_eq!(store.stats().tenants[&a].head_spans, 0);
    let got = get(&store, "a", [7; 16]).await.unwrap();
    assert_eq!(got.spans, want, "from the block");
    assert_eq!(
        get(&store, "a", tid(1)).await.unwrap().spans,
        vec![plain.clone()]
    );
    assert!(get(&store, "a", [8; 16]).await.is_none());
    store.close().await.unwrap();
    drop(store);

    // Reopened, reading the block from the bucket (no cached reader).
    let store = open(dir.path(), &blocks).await;
    assert_eq!(get(&store, "a", [7; 16]).await.unwrap().spans, want);
    // An empty node sharing the bucket.
    let dir2 = tempfile::tempdir().unwrap();
    let other = open(dir2.path(), &blocks).await;
    assert_eq!(get(&other, "a", [7; 16]).await.unwrap().spans, want);
    let all = scan(&other, &scan_req(ts("a"), 0, u64::MAX)).await;
    assert_eq!(all.len(), 2);
    assert_eq!(other.stats().tenants[&a].blocks, 1);
    assert_eq!(other.stats().tenants[&a].block_spans, 3);
}

#[tokio::test]
async fn late_spans_are_merged() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let store = open(dir.path(), &blocks).await;
    let a = t("a");
    let o = origin("svc");
    let s0 = span(1, 0, T0, &o, "root");
    let s1 = span(1, 1, T0 + S, &o, "child");
    let s2 = span(1, 2, T0 + 2 * S, &o, "late");
    store.push(&a, vec![s0.clone()], &no_limit()).await.unwrap();
    store.flush_all_to_blocks().await.unwrap();
    store.push(&a, vec![s1.clone()], &no_limit()).await.unwrap();
    let want2 = vec![s0.clone(), s1.clone()];
    assert_eq!(get(&store, "a", tid(1)).await.unwrap().spans, want2);
    store.flush_all_to_blocks().await.unwrap();
    store.push(&a, vec![s2.clone()], &no_limit()).await.unwrap();
    let want3 = vec![s0.clone(), s1.clone(), s2.clone()];
    assert_eq!(get(&store, "a", tid(1)).await.unwrap().spans, want3);
    // A scan whose range only covers the late span still yields the whole trace, once.
    let got = scan(&store, &scan_req(ts("a"), T0 + 2 * S, T0 + 3 * S)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.spans, want3);
    let got = scan(&store, &scan_req(ts("a"), 0, u64::MAX)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.spans, want3);
    // A retried push of the same span is not shown twice.
    store.push(&a, vec![s2.clone()], &no_limit()).await.unwrap();
    assert_eq!(get(&store, "a", tid(1)).await.unwrap().spans, want3);
}

#[tokio::test]
async fn max_trace_size_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let store = open(dir.path(), &blocks).await;
    let a = t("a");
    let o = origin("svc");
    let limits = PushLimits {
        max_bytes_per_trace: 400,
    };
    let batch: Vec<Span> = (0..10).map(|n| span(1, n, T0 + n, &o, "s")).collect();
    let mut other = span(2, 0, T0, &o, "s");
    other.name = "other".into();
    let mut all = batch.clone();
    all.push(other.clone());
    let r = store.push(&a, all, &limits).await.unwrap();
    assert!(r.accepted >= 2 && r.accepted < 11, "{r:?}");
    assert_eq!(r.accepted + r.rejected, 11);
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    let msg = &r.errors[0];
    assert!(
        msg.starts_with("TRACE_TOO_LARGE: max size of trace (400) exceeded while adding ")
            && msg.ends_with(&format!(
                "bytes to trace {} for tenant a",
                hex::encode(tid(1))
            )),
        "{msg}"
    );
    let kept = get(&store, "a", tid(1)).await.unwrap();
    assert_eq!(kept.spans.len(), r.accepted - 1);
    assert_eq!(get(&store, "a", tid(2)).await.unwrap().spans, vec![other]);
    // Still full on the next push; unlimited pushes are accepted.
    let r = store
        .push(&a, vec![span(1, 50, T0, &o, "s")], &limits)
        .await
        .unwrap();
    assert_eq!((r.accepted, r.rejected), (0, 1));
    let r = store
        .push(&a, vec![span(1, 50, T0, &o, "s")], &no_limit())
        .await
        .unwrap();
    assert_eq!(r.accepted, 1);
}

#[tokio::test]
async fn wal_replay_after_crash() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let a = t("a");
    let o = origin("svc");
    {
        let store = open(dir.path(), &blocks).await;
        let spans: Vec<Span> = (0..5).map(|n| span(1, n, T0 + n, &o, "s")).collect();
        store.push(&a, spans, &no_limit()).await.unwrap();
        store.flush_all_to_blocks().await.unwrap();
        store
            .push(&a, vec![span(1, 9, T0 + 9, &o, "s")], &no_limit())
            .await
            .unwrap();
        store
            .push(&a, vec![span(2, 0, T0, &o, "s")], &no_limit())
            .await
            .unwrap();
        // Dropped without close: a crash.
    }
    let store = open(dir.path(), &blocks).await;
    assert_eq!(get(&store, "a", tid(1)).await.unwrap().spans.len(), 6);
    assert_eq!(get(&store, "a", tid(2)).await.unwrap().spans.len(), 1);
    let st = &store.stats().tenants[&a];
    assert_eq!((st.head_spans, st.blocks), (2, 1));
    assert!(st.wal_bytes > 0);
    // The origin is shared again after replay.
    let tr = get(&store, "a", tid(1)).await.unwrap();
    assert_eq!(tr.spans[0].origin, o);
}

#[tokio::test]
async fn crash_between_upload_and_truncation_does_not_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let a = t("a");
    let o = origin("svc");
    let wal_dir = dir.path().join("a/traces/wal");
    let saved = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), &blocks).await;
        store
            .push(&a, vec![span(1, 0, T0, &o, "s")], &no_limit())
            .await
            .unwrap();
        store.close().await.unwrap();
    }
    // Keep the WAL as it was before the cut, then cut, then put the old segments back.
    for e in std::fs::read_dir(&wal_dir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), saved.path().join(e.file_name())).unwrap();
    }
    {
        let store = open(dir.path(), &blocks).await;
        store.flush_all_to_blocks().await.unwrap();
        store.close().await.unwrap();
    }
    for e in std::fs::read_dir(saved.path()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), wal_dir.join(e.file_name())).unwrap();
    }
    let store = open(dir.path(), &blocks).await;
    assert_eq!(get(&store, "a", tid(1)).await.unwrap().spans.len(), 1);
    assert_eq!(store.stats().tenants[&a].head_spans, 0);
}

#[tokio::test]
async fn retention_deletes_old_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let store = TraceStore::open(
        &cfg(dir.path()),
        overrides(CfgDuration::from_secs(3600)),
        blocks.clone(),
    )
    .await
    .unwrap();
    let a = t("a");
    let o = origin("svc");
    store
        .push(&a, vec![span(1, 0, T0, &o, "old")], &no_limit())
        .await
        .unwrap();
    store.flush_all_to_blocks().await.unwrap();
    store
        .push(
            &a,
            vec![span(2, 0, T0 + 2 * 3600 * S, &o, "new")],
            &no_limit(),
        )
        .await
        .unwrap();
    store.flush_all_to_blocks().await.unwrap();
    assert_eq!(store.stats().tenants[&a].blocks, 2);
    store
        .maintenance((T0 + 2 * 3600 * S + 60 * S) as i64)
        .await
        .unwrap();
    assert_eq!(store.stats().tenants[&a].blocks, 1);
    assert!(get(&store, "a", tid(1)).await.is_none());
    assert!(get(&store, "a", tid(2)).await.is_some());
    assert_eq!(blocks.list_blocks(&a, SIGNAL).await.unwrap().len(), 1);
}

#[tokio::test]
async fn tenants_are_isolated_and_federated() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let store = open(dir.path(), &blocks).await;
    let o = origin("svc");
    store
        .push(&t("a"), vec![span(1, 0, T0, &o, "a1")], &no_limit())
        .await
        .unwrap();
    store
        .push(&t("b"), vec![span(2, 0, T0, &o, "b2")], &no_limit())
        .await
        .unwrap();
    store.flush_all_to_blocks().await.unwrap();
    store
        .push(&t("b"), vec![span(1, 1, T0, &o, "b1")], &no_limit())
        .await
        .unwrap();
    assert_eq!(get(&store, "a", tid(1)).await.unwrap().spans.len(), 1);
    assert!(get(&store, "a", tid(2)).await.is_none());
    assert_eq!(get(&store, "b", tid(1)).await.unwrap().spans[0].name, "b1");
    assert!(get(&store, "c", tid(1)).await.is_none());
    let only_a = scan(&store, &scan_req(ts("a"), 0, u64::MAX)).await;
    assert_eq!(only_a.len(), 1);
    assert_eq!(only_a[0].0, "a");
    let fed = TenantSet::from_ids(vec![t("a"), t("b")]);
    let mut got: Vec<(String, TraceId, usize)> = scan(&store, &scan_req(fed.clone(), 0, u64::MAX))
        .await
        .into_iter()
        .map(|(t, tr)| (t, tr.trace_id, tr.spans.len()))
        .collect();
    got.sort();
    let mut want = vec![
        ("a".to_string(), tid(1), 1),
        ("b".to_string(), tid(1), 1),
        ("b".to_string(), tid(2), 1),
    ];
    want.sort();
    assert_eq!(got, want);
    // trace by id across the federation merges both tenants' parts.
    let both = store.trace_by_id(&fed, tid(1), 0, u64::MAX).await.unwrap();
    assert_eq!(both.unwrap().spans.len(), 2);
}

/// Traces 0..n, trace `i` starting at `T0 + i * S`, 3 spans each, service `svc{i % 4}`.
async fn fill(store: &TraceStore, tenant: &TenantId, n: u64) {
    let origins: Vec<Arc<SpanOrigin>> = (0..4).map(|i| origin(&format!("svc{i}"))).collect();
    let mut spans = Vec::new();
    for i in 0..n {
        for k in 0..3 {
            spans.push(span(
                i,
                k,
                T0 + i * S + k * 10,
                &origins[(i % 4) as usize],
                &format!("op{}", i % 7),
            ));
        }
    }
    store.push(tenant, spans, &no_limit()).await.unwrap();
}

fn ids(v: &[(String, Trace)]) -> Vec<TraceId> {
    let mut ids: Vec<TraceId> = v.iter().map(|(_, t)| t.trace_id).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn time_range_filters_head_and_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let opts = StoreOptions {
        row_group_spans: 8,
        ..StoreOptions::default()
    };
    let store = open_opts(dir.path(), &blocks, opts).await;
    let a = t("a");
    fill(&store, &a, 50).await;
    let check = |got: Vec<(String, Trace)>, lo: u64, hi: u64| {
        let mut want: Vec<TraceId> = (lo..hi).map(tid).collect();
        want.sort();
        assert_eq!(ids(&got), want, "{lo}..{hi}");
        for (_, tr) in &got {
            assert_eq!(tr.spans.len(), 3);
        }
    };
    // Trace i covers [T0 + i s, T0 + i s + 1020 ns].
    check(
        scan(&store, &scan_req(ts("a"), T0 + 10 * S, T0 + 20 * S)).await,
        10,
        20,
    );
    store.flush_all_to_blocks().await.unwrap();
    fill(&store, &a, 0).await;
    check(
        scan(&store, &scan_req(ts("a"), T0 + 10 * S, T0 + 20 * S)).await,
        10,
        20,
    );
    check(
        scan(
            &store,
            &scan_req(ts("a"), T0 + 10 * S + 500, T0 + 20 * S + 1),
        )
        .await,
        10,
        21,
    );
    check(scan(&store, &scan_req(ts("a"), 0, T0)).await, 0, 0);
    check(
        scan(&store, &scan_req(ts("a"), T0 + 100 * S, u64::MAX)).await,
        0,
        0,
    );
    check(scan(&store, &scan_req(ts("a"), 0, 0)).await, 0, 50);
    // Half in a block, half in the head.
    let o = origin("svc0");
    let extra: Vec<Span> = (50..70)
        .flat_map(|i| (0..3).map(move |k| (i, k)))
        .map(|(i, k)| span(i, k, T0 + i * S + k * 10, &o, "x"))
        .collect();
    store.push(&a, extra, &no_limit()).await.unwrap();
    check(
        scan(&store, &scan_req(ts("a"), T0 + 45 * S, T0 + 65 * S)).await,
        45,
        65,
    );
    // trace_by_id prunes blocks by their time range.
    assert!(store
        .trace_by_id(&ts("a"), tid(5), T0 + 1000 * S, T0 + 1001 * S)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .trace_by_id(&ts("a"), tid(5), T0, T0 + 6 * S)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn hints_prune_without_false_negatives() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let opts = StoreOptions {
        row_group_spans: 6,
        ..StoreOptions::default()
    };
    let store = open_opts(dir.path(), &blocks, opts).await;
    let a = t("a");
    fill(&store, &a, 200).await;
    store.flush_all_to_blocks().await.unwrap();
    // Trace 1000: its svc-x span arrives late, into the head; its first part is in the block.
    let ox = origin("svc-x");
    store
        .push(
            &a,
            vec![span(1000, 0, T0, &origin("svc0"), "first")],
            &no_limit(),
        )
        .await
        .unwrap();
    store.flush_all_to_blocks().await.unwrap();
    store
        .push(&a, vec![span(1000, 1, T0 + 1, &ox, "late-x")], &no_limit())
        .await
        .unwrap();
    let all = scan(&store, &scan_req(ts("a"), 0, u64::MAX)).await;
    assert_eq!(all.len(), 201);
    let full_bytes = {
        let mut sink = |_: &TenantId, _: &Trace| ControlFlow::Continue(());
        store
            .scan(&scan_req(ts("a"), 0, u64::MAX), &mut sink)
            .await
            .unwrap()
            .bytes
    };
    for (svcs, names) in [
        (vec!["svc1"], vec![]),
        (vec!["svc1", "svc2"], vec!["op3"]),
        (vec![], vec!["op5"]),
        (vec!["svc-x"], vec![]),
        (vec!["svc0"], vec!["late-x"]),
        (vec!["nope"], vec![]),
    ] {
        let req = TraceScan {
            service_names: svcs.iter().map(|s| s.to_string()).collect(),
            span_names: names.iter().map(|s| s.to_string()).collect(),
            ..scan_req(ts("a"), 0, u64::MAX)
        };
        let mut got_bytes = 0;
        let mut got = Vec::new();
        {
            let mut sink = |_: &TenantId, tr: &Trace| {
                got.push(tr.trace_id);
                ControlFlow::Continue(())
            };
            got_bytes += store.scan(&req, &mut sink).await.unwrap().bytes;
        }
        got.sort();
        let want: Vec<TraceId> = all
            .iter()
            .filter(|(_, tr)| {
                (svcs.is_empty()
                    || tr
                        .spans
                        .iter()
                        .any(|s| svcs.contains(&s.origin.service_name())))
                    && (names.is_empty()
                        || tr.spans.iter().any(|s| names.contains(&s.name.as_str())))
            })
            .map(|(_, tr)| tr.trace_id)
            .collect();
        for id in &want {
            assert!(
                got.contains(id),
                "{svcs:?} {names:?}: missing {}",
                hex::encode(id)
            );
        }
        if svcs == vec!["nope"] {
            assert!(got.is_empty());
            assert_eq!(got_bytes, 0);
        }
        if svcs == vec!["svc1"] {
            assert!(got_bytes < full_bytes, "{got_bytes} vs {full_bytes}");
            // The whole trace is delivered, not the matching spans only.
            assert!(got.len() >= want.len());
        }
    }
}

#[tokio::test]
async fn break_stops_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let store = open(dir.path(), &blocks).await;
    fill(&store, &t("a"), 20).await;
    store.flush_all_to_blocks().await.unwrap();
    fill(&store, &t("b"), 20).await;
    let fed = TenantSet::from_ids(vec![t("a"), t("b")]);
    let mut n = 0;
    let mut sink = |_: &TenantId, _: &Trace| {
        n += 1;
        if n == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let st = store
        .scan(&scan_req(fed, 0, u64::MAX), &mut sink)
        .await
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(st.traces, 3);
}

#[tokio::test]
async fn block_cut_by_size_and_age() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let opts = StoreOptions {
        block_max_bytes: 10 << 10,
        block_max_age_ns: 3600 * S as i64,
        ..StoreOptions::default()
    };
    let store = open_opts(dir.path(), &blocks, opts).await;
    let a = t("a");
    fill(&store, &a, 100).await;
    // The size-triggered cut runs in the background.
    for _ in 0..200 {
        if store.stats().tenants[&a].blocks == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(store.stats().tenants[&a].blocks, 1);
    store
        .push(&a, vec![span(500, 0, T0, &origin("s"), "x")], &no_limit())
        .await
        .unwrap();
    store.maintenance(now_ns()).await.unwrap();
    assert_eq!(store.stats().tenants[&a].blocks, 1);
    store
        .maintenance(now_ns() + 2 * 3600 * S as i64)
        .await
        .unwrap();
    let st = &store.stats().tenants[&a];
    assert_eq!((st.blocks, st.head_spans, st.block_spans), (2, 0, 301));
    assert_eq!(
        scan(&store, &scan_req(ts("a"), 0, u64::MAX)).await.len(),
        101
    );
}

#[test]
fn decoders_reject_truncated_input() {
    let rich = rich_span();
    let plain = span(1, 0, T0, &origin("x"), "n");
    let mut rec = codec::WalRecord::new();
    rec.push(&rich);
    rec.push(&plain);
    let bytes = rec.finish();
    let back = codec::decode_wal_record(&bytes).unwrap();
    assert_eq!(back.len(), 2);
    assert_eq!((&back[0].0, &back[1].0), (&rich, &plain));
    for n in 0..bytes.len() {
        assert!(codec::decode_wal_record(&bytes[..n]).is_err(), "{n}");
    }
    let traces = vec![(rich.trace_id, vec![&rich]), (plain.trace_id, vec![&plain])];
    let mut traces = traces;
    traces.sort_by_key(|t| t.0);
    let built = block::build_block(&traces, 1, 3).unwrap();
    assert_eq!(built.trace_index.row_groups.len(), 2);
    let ix = block::TraceIndex::decode(&built.index).unwrap();
    assert_eq!(ix.ids, built.trace_index.ids);
    for n in 0..built.index.len() {
        assert!(block::TraceIndex::decode(&built.index[..n]).is_err(), "{n}");
    }
}

/// xorshift64*: deterministic data for the benchmark without a `rand` dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn iv(i: i64) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::IntValue(i)),
    })
}

/// Realistic traces: 10–50 spans, 5–20 attributes per span, 20 services with 9 resource
/// attributes each, some events and errors.
struct Gen {
    rng: Rng,
    origins: Vec<Arc<SpanOrigin>>,
    routes: Vec<String>,
    next_trace: u64,
    now: u64,
}

impl Gen {
    fn new() -> Self {
        let origins = (0..20)
            .map(|i| {
                Arc::new(SpanOrigin {
                    resource: Resource {
                        attributes: vec![
                            kv("service.name", sv(&format!("service-{i}"))),
                            kv("service.version", sv("1.4.2")),
                            kv("service.namespace", sv("shop")),
                            kv("host.name", sv(&format!("node-{}", i % 5))),
                            kv("k8s.namespace.name", sv("prod")),
                            kv("k8s.pod.name", sv(&format!("service-{i}-7d9f8b-x{i}q"))),
                            kv("telemetry.sdk.name", sv("opentelemetry")),
                            kv("telemetry.sdk.language", sv("go")),
                            kv("telemetry.sdk.version", sv("1.28.0")),
                        ],
                        ..Default::default()
                    },
                    resource_schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
                    scope: InstrumentationScope {
                        name: "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
                            .into(),
                        version: "0.53.0".into(),
                        ..Default::default()
                    },
                    scope_schema_url: String::new(),
                })
            })
            .collect();
        let routes = (0..30)
            .map(|i| format!("/api/v1/resource{i}/{{id}}"))
            .collect();
        Self {
            rng: Rng(0x1234_5678_9abc_def1),
            origins,
            routes,
            next_trace: 0,
            now: T0,
        }
    }

    fn trace(&mut self, out: &mut Vec<Span>) -> TraceId {
        let r = &mut self.rng;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&r.next().to_le_bytes());
        id[8..].copy_from_slice(&r.next().to_le_bytes());
        self.next_trace += 1;
        self.now += 200_000; // 5k traces/s
        let n = 10 + r.below(41);
        let start = self.now;
        let mut ids: Vec<SpanId> = Vec::with_capacity(n as usize);
        let svc0 = r.below(20) as usize;
        for k in 0..n {
            let span_id = r.next().to_le_bytes();
            let parent = if k == 0 {
                [0; 8]
            } else {
                ids[r.below(k) as usize]
            };
            ids.push(span_id);
            let svc = if k == 0 { svc0 } else { r.below(20) as usize };
            let s0 = start + k * 150_000 + r.below(100_000);
            let dur = 20_000 + r.below(5_000_000);
            let route = self.routes[r.below(30) as usize].clone();
            let mut attributes = vec![
                kv(
                    "http.method",
                    sv(["GET", "POST", "PUT"][r.below(3) as usize]),
                ),
                kv("http.route", sv(&route)),
                kv(
                    "http.status_code",
                    iv(if r.below(50) == 0 { 500 } else { 200 }),
                ),
                kv(
                    "http.url",
                    sv(&format!(
                        "http://service-{svc}:8080{}",
                        route.replace("{id}", &r.below(10_000).to_string())
                    )),
                ),
                kv("net.peer.name", sv(&format!("service-{}", r.below(20)))),
            ];
            let extra = r.below(16);
            for e in 0..extra {
                attributes.push(match e {
                    0 => kv("user.id", iv(r.below(100_000) as i64)),
                    1 => kv("db.system", sv("postgresql")),
                    2 => kv(
                        "db.statement",
                        sv("SELECT id, name, price FROM products WHERE id = $1"),
                    ),
                    3 => kv("thread.id", iv(r.below(64) as i64)),
                    4 => kv("component", sv("http")),
                    5 => kv(
                        "cache.hit",
                        Some(AnyValue {
                            value: Some(any_value::Value::BoolValue(r.below(2) == 0)),
                        }),
                    ),
                    6 => kv("messaging.system", sv("kafka")),
                    7 => kv("rpc.system", sv("grpc")),
                    8 => kv("http.request_content_length", iv(r.below(4096) as i64)),
                    9 => kv("http.user_agent", sv("Mozilla/5.0 (X11; Linux x86_64)")),
                    10 => kv(
                        "region",
                        sv(["eu-west-1", "us-east-1"][r.below(2) as usize]),
                    ),
                    _ => kv(
                        &format!("custom.attr{e}"),
                        sv(&format!("value-{}", r.below(10))),
                    ),
                });
            }
            let error = r.below(50) == 0;
            let events = if r.below(10) == 0 {
                vec![Event {
                    time_unix_nano: s0 + dur / 2,
                    name: "exception".into(),
                    attributes: vec![
                        kv("exception.type", sv("java.io.IOException")),
                        kv("exception.message", sv("connection reset by peer")),
                    ],
                    dropped_attributes_count: 0,
                }]
            } else {
                Vec::new()
            };
            out.push(Span {
                trace_id: id,
                span_id,
                parent_span_id: parent,
                trace_state: String::new(),
                flags: 1,
                name: format!("{} {}", ["GET", "POST"][(k % 2) as usize], route),
                kind: [1, 2, 3][r.below(3) as usize],
                start_ns: s0,
                end_ns: s0 + dur,
                attributes,
                dropped_attributes_count: 0,
                events,
                dropped_events_count: 0,
                links: Vec::new(),
                dropped_links_count: 0,
                status_code: if error { 2 } else { 0 },
                status_message: if error {
                    "internal error".into()
                } else {
                    String::new()
                },
                origin: self.origins[svc].clone(),
            });
        }
        id
    }
}

/// CPU seconds used by this process so far (all threads; `/proc/self/stat` utime + stime).
fn process_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// `cargo test --release -p traces --lib store::tests::bench_store -- --ignored --nocapture`
/// (`BENCH_SPANS`, default 2 M, spans stored in blocks of `BENCH_BLOCK_SPANS`, default 1 M).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_store() {
    let total: u64 = std::env::var("BENCH_SPANS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let per_block: u64 = std::env::var("BENCH_BLOCK_SPANS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let blocks = BlockStore::from_config(&StorageConfig {
        data_dir: bucket.path().to_path_buf(),
        ..StorageConfig::default()
    })
    .unwrap();
    let opts = StoreOptions {
        block_max_bytes: u64::MAX,
        row_group_spans: std::env::var("BENCH_RG_SPANS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(StoreOptions::default().row_group_spans),
        ..StoreOptions::default()
    };
    let store = open_opts(dir.path(), &blocks, opts).await;
    let a = t("bench");
    let mut gen = Gen::new();
    let mut sample: Vec<TraceId> = Vec::new();
    let (mut stored, mut ingest_time, mut cut_time, mut ingest_cpu) = (0u64, 0f64, 0f64, 0f64);
    let mut raw = 0u64;
    while stored < total {
        let mut in_block = 0;
        while in_block < per_block {
            let mut batch = Vec::with_capacity(1100);
            while batch.len() < 1000 {
                let id = gen.trace(&mut batch);
                if gen.next_trace.is_multiple_of(97) {
                    sample.push(id);
                }
            }
            in_block += batch.len() as u64;
            let (t0, c0) = (Instant::now(), process_cpu_s());
            store.push(&a, batch, &no_limit()).await.unwrap();
            ingest_time += t0.elapsed().as_secs_f64();
            ingest_cpu += process_cpu_s() - c0;
        }
        raw += store.stats().tenants[&a].head_bytes;
        let t0 = Instant::now();
        store.flush_all_to_blocks().await.unwrap();
        cut_time += t0.elapsed().as_secs_f64();
        stored += in_block;
    }
    let st = store.stats().tenants[&a].clone();
    println!(
        "ingest: {stored} spans in {ingest_time:.2}s = {:.0} spans/s wall, {:.0} spans per CPU second (one pusher; store only: encode, WAL write, head; tick-sampled CPU)",
        stored as f64 / ingest_time,
        stored as f64 / ingest_cpu
    );
    println!(
        "blocks: {} blocks, {} bytes = {:.1} bytes/span on disk (wal encoding {:.1} bytes/span); cut {:.0} spans/s",
        st.blocks,
        st.block_bytes,
        st.block_bytes as f64 / stored as f64,
        raw as f64 / stored as f64,
        stored as f64 / cut_time
    );
    // Compressed bytes per column, over all blocks.
    let mut per_col: BTreeMap<String, i64> = BTreeMap::new();
    for r in store.inner.readers.lock().values() {
        for g in r.meta.metadata().row_groups() {
            for c in g.columns() {
                *per_col.entry(c.column_path().string()).or_default() += c.compressed_size();
            }
        }
    }
    let mut cols: Vec<(String, i64)> = per_col.into_iter().collect();
    cols.sort_by_key(|c| -c.1);
    let cols: Vec<String> = cols
        .iter()
        .map(|(n, b)| format!("{n} {:.1}", *b as f64 / stored as f64))
        .collect();
    println!("bytes/span by column: {}", cols.join(", "));
    // Trace by id on a cold reader cache (fresh store on the same bucket), then warm.
    let store = open_opts(dir.path(), &blocks, StoreOptions::default()).await;
    let fed = ts("bench");
    for pass in ["cold", "warm"] {
        let mut lat = Vec::new();
        let mut spans = 0;
        for id in sample.iter().take(2000) {
            let t0 = Instant::now();
            let tr = store
                .trace_by_id(&fed, *id, 0, u64::MAX)
                .await
                .unwrap()
                .unwrap();
            lat.push(t0.elapsed().as_secs_f64() * 1000.0);
            spans += tr.spans.len();
        }
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
        println!(
            "trace by id ({pass}, {} lookups, {:.1} spans avg): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            lat.len(),
            spans as f64 / lat.len() as f64,
            p(0.5),
            p(0.99),
            p(1.0)
        );
    }
    let t0 = Instant::now();
    let mut sink = |_: &TenantId, _: &Trace| ControlFlow::Continue(());
    let sst = store
        .scan(&scan_req(fed.clone(), 0, u64::MAX), &mut sink)
        .await
        .unwrap();
    let el = t0.elapsed().as_secs_f64();
    println!(
        "full scan: {} traces, {} spans in {el:.2}s = {:.0} spans/s, {} bytes read",
        sst.traces,
        sst.spans,
        sst.spans as f64 / el,
        sst.bytes
    );
    let req = TraceScan {
        service_names: vec!["service-3".into()],
        span_names: vec!["nope".into()],
        ..scan_req(fed, 0, u64::MAX)
    };
    let t0 = Instant::now();
    let sst = store.scan(&req, &mut sink).await.unwrap();
    println!(
        "hinted scan (service-3, span name absent): {} traces, {} bytes read in {:.3}s",
        sst.traces,
        sst.bytes,
        t0.elapsed().as_secs_f64()
    );
}

// ------------------------------------------------------------------------------------------------
// Predicate pushdown

struct Xs(u64);

impl Xs {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn any(v: any_value::Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(v) })
}

/// Varied spans for pushdown tests: odd attribute types (ints where strings are usual, arrays,
/// duplicates, protos with `key_strindex`), odd resources, ends before starts, rare errors.
fn varied_trace(r: &mut Xs, i: u64, origins: &[Arc<SpanOrigin>], start: u64) -> Vec<Span> {
    let n = 1 + r.below(8);
    (0..n)
        .map(|k| {
            let mut s = span(
                i,
                k,
                start + k * 1000,
                &origins[r.below(origins.len() as u64) as usize],
                "",
            );
            s.name = format!("op{}", r.below(6));
            s.kind = r.below(6) as i32;
            s.end_ns = match r.below(20) {
                0 => s.start_ns - 5,
                _ => s.start_ns + r.below(100) * 1_000_000,
            };
            // Rare errors: most row groups hold none.
            s.status_code = if r.below(60) == 0 {
                2
            } else {
                r.below(2) as i32
            };
            if s.status_code == 2 {
                s.status_message = "boom".into();
            }
            let method = match r.below(10) {
                0 => iv(7),
                1..=3 => sv("POST"),
                _ => sv("GET"),
            };
            s.attributes = vec![kv("http.method", method)];
            match r.below(8) {
                0 => s.attributes.push(kv("http.status_code", sv("500"))),
                1 => {
                    // A duplicate: the second value lives in the generic blob.
                    s.attributes.push(kv("http.status_code", iv(200)));
                    s.attributes.push(kv("http.status_code", iv(500)));
                }
                _ => s.attributes.push(kv(
                    "http.status_code",
                    iv(if r.below(10) == 0 { 500 } else { 200 }),
                )),
            }
            s.attributes
                .push(kv("app.x", sv(&format!("v{}", r.below(5)))));
            if r.below(4) == 0 {
                s.attributes.push(kv(
                    "app.arr",
                    any(any_value::Value::ArrayValue(ArrayValue {
                        values: vec![sv("a").unwrap(), sv(&format!("b{}", r.below(3))).unwrap()],
                    })),
                ));
            }
            if r.below(3) == 0 {
                s.attributes.push(kv(
                    "flag",
                    any(any_value::Value::BoolValue(r.below(2) == 0)),
                ));
                s.attributes.push(kv(
                    "ratio",
                    any(any_value::Value::DoubleValue(r.below(100) as f64 / 100.0)),
                ));
            }
            if r.below(10) == 0 {
                s.attributes.push(KeyValue {
                    key: "app.x".into(),
                    value: sv("v9"),
                    key_strindex: 3,
                });
            }
            if r.below(7) == 0 {
                // Shadows the resource's service.name for unscoped reads.
                s.attributes.push(kv("service.name", sv("span-svc")));
            }
            s
        })
        .collect()
}

fn varied_origins() -> Vec<Arc<SpanOrigin>> {
    let mut v: Vec<Arc<SpanOrigin>> = (0..5).map(|i| origin(&format!("svc{i}"))).collect();
    let odd = |attrs: Vec<KeyValue>| {
        Arc::new(SpanOrigin {
            resource: Resource {
                attributes: attrs,
                ..Default::default()
            },
            ..Default::default()
        })
    };
    v.push(odd(vec![kv("service.name", iv(5))]));
    v.push(odd(vec![
        kv("service.name", sv("svc1")),
        kv("service.name", sv("svc9")),
    ]));
    v.push(odd(vec![kv(
        "service.name",
        any(any_value::Value::ArrayValue(ArrayValue {
            values: vec![sv("svc2").unwrap(), sv("svc8").unwrap()],
        })),
    )]));
    v.push(odd(vec![kv("http.method", sv("POST"))]));
    v
}

/// (trace id, matched span indices per spanset) of every trace the query matches.
type Matches = Vec<(TraceId, Vec<Vec<usize>>)>;

async fn run_query(
    store: &TraceStore,
    q: &crate::traceql::Query,
    filter: bool,
) -> (Matches, ScanStats) {
    let ev = crate::traceql::Evaluator::new(q);
    let req = TraceScan {
        tenants: Some(ts("a")),
        start_ns: 0,
        end_ns: u64::MAX,
        filter: if filter {
            crate::search::pushdown(q)
        } else {
            None
        },
        ..Default::default()
    };
    let mut out = Vec::new();
    let mut sink = |_: &TenantId, tr: &Trace| {
        let sets: Vec<Vec<usize>> = ev
            .eval_trace(tr)
            .iter()
            .filter(|s| !s.spans.is_empty())
            .map(|s| s.indices())
            .collect();
        if !sets.is_empty() {
            out.push((tr.trace_id, sets));
        }
        ControlFlow::Continue(())
    };
    let stats = store.scan(&req, &mut sink).await.unwrap();
    out.sort();
    (out, stats)
}

#[tokio::test]
async fn pushdown_matches_a_full_scan() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let opts = StoreOptions {
        row_group_spans: 12,
        ..StoreOptions::default()
    };
    let store = open_opts(dir.path(), &blocks, opts).await;
    let a = t("a");
    let origins = varied_origins();
    let mut r = Xs(0x9e37_79b9_7f4a_7c15);
    // Two blocks and a head; traces 0..30 have parts in all three.
    for round in 0..3u64 {
        let mut spans = Vec::new();
        for i in 0..200u64 {
            if round == 0 || i < 30 {
                let mut v = varied_trace(&mut r, i, &origins, T0 + i * S);
                for s in &mut v {
                    s.span_id[0] = round as u8 + 1;
                }
                spans.extend(v);
            }
        }
        if round == 1 {
            for i in 200..350u64 {
                spans.extend(varied_trace(&mut r, i, &origins, T0 + i * S));
            }
        }
        store.push(&a, spans, &no_limit()).await.unwrap();
        if round < 2 {
            store.flush_all_to_blocks().await.unwrap();
        }
    }
    let pushed = [
        r#"{ resource.service.name = "svc1" }"#,
        r#"{ resource.service.name = "svc2" && span.http.status_code = 500 }"#,
        r#"{ resource.service.name = "svc9" }"#,
        r#"{ resource.service.name = 5 }"#,
        r#"{ status = error }"#,
        r#"{ status = unset && kind = client }"#,
        r#"{ status != ok }"#,
        r#"{ kind = server && duration > 50ms }"#,
        r#"{ duration < 1ms }"#,
        r#"{ duration >= 99ms }"#,
        r#"{ name = "op3" || name = "op5" }"#,
        r#"{ name =~ "op[12]" }"#,
        r#"{ name !~ "op.*" }"#,
        r#"{ name > "op4" }"#,
        r#"{ statusMessage = "boom" }"#,
        r#"{ span.http.method = "POST" }"#,
        r#"{ span.http.method = 7 }"#,
        r#"{ .http.method = "POST" }"#,
        r#"{ .service.name = "svc2" }"#,
        r#"{ .service.name = "span-svc" }"#,
        r#"{ span.http.status_code = 500 }"#,
        r#"{ span.http.status_code = "500" }"#,
        r#"{ span.http.status_code >= 500 && resource.service.name = "svc1" }"#,
        r#"{ span.app.arr = "b2" }"#,
        r#"{ span.app.x = "v9" }"#,
        r#"{ span.app.x =~ "v[13]" && status = error }"#,
        r#"{ span.flag = true }"#,
        r#"{ span.ratio > 0.5 }"#,
        r#"{ span.ratio > 1 }"#,
        r#"{ traceDuration > 80ms }"#,
        r#"{ traceDuration >= 1ms && status = error }"#,
        r#"{ status = error } && { name = "op1" }"#,
        r#"{ status = error } || { kind = producer }"#,
        r#"{ status = error } > { name = "op2" }"#,
        r#"{ status = error } !> { name = "op2" }"#,
        r#"{ name = "nope" } !> { name = "op2" }"#,
        r#"{ span.app.x = "zzz" } !~ { status = error }"#,
        r#"{ status = error } | count() > 1"#,
        r#"{ resource.service.name = "svc1" } | by(name) | count() > 1"#,
        r#"{ status = error } | select(span.app.x)"#,
        r#"({ status = error } | count() > 0) && { kind = consumer }"#,
        r#"{ status = error && span.nope = "x" }"#,
    ];
    let not_pushed = [
        r#"{}"#,
        r#"{ !(status = error) }"#,
        r#"{ span.http.method != nil }"#,
        r#"{ parent.name = "op1" }"#,
        r#"{ rootServiceName = "svc3" }"#,
        r#"{ status = error } || { span.foo != nil }"#,
        r#"{ status = error || span.foo != nil }"#,
        r#"{ event:name = "x" }"#,
        r#"{ duration * 2 > 100ms }"#,
        r#"{ "op1" = name }"#,
    ];
    let mut pruned_rgs = 0;
    let mut pruned_traces = 0;
    for q in pushed.iter().chain(&not_pushed) {
        let query = crate::traceql::parse(q).unwrap();
        let p = crate::search::pushdown(&query);
        assert_eq!(p.is_some(), pushed.contains(q), "{q}: {p:?}");
        let (want, full) = run_query(&store, &query, false).await;
        let (got, st) = run_query(&store, &query, true).await;
        assert_eq!(got, want, "{q}");
        pruned_rgs += st.row_groups_pruned;
        pruned_traces += st.traces_pruned;
        if *q == r#"{ status = error }"# {
            // Errors are rare: most row groups are ruled out by statistics alone.
            assert!(!want.is_empty());
            assert!(st.row_groups_pruned > 20, "{st:?}");
            assert!(st.bytes * 3 < full.bytes, "{st:?} vs {full:?}");
        }
        if not_pushed.contains(q) {
            assert_eq!((st.row_groups_pruned, st.traces_pruned), (0, 0), "{q}");
        }
    }
    assert!(pruned_rgs > 0 && pruned_traces > 0);
}
