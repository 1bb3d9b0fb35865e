//! Tailer behaviour on real files, and end-to-end tests against an in-process push endpoint.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use prost::Message;
use proto::loki::PushRequest;

use super::labels::LabelRules;
use super::positions;
use super::ship::tests::decode;
use super::ship::Batch;
use super::tailer::{Tailer, TailerOptions};
use super::*;
use crate::exposition::Families;

fn opts(globs: &[String], pod_glob: &str) -> TailerOptions {
    TailerOptions {
        pod_logs_glob: pod_glob.into(),
        files: globs.to_vec(),
        max_line: 100,
        tail_from_end: false,
        rules: LabelRules {
            node_name: "n1".into(),
            default_tenant: Some("infra".into()),
            tenant_from_namespace: true,
            ..Default::default()
        },
    }
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Polls once and returns the lines read.
fn lines(t: &mut Tailer) -> Vec<String> {
    let mut b = Batch::default();
    t.poll(&mut b, 1 << 20);
    decode(&b.into_requests().unwrap())
        .into_iter()
        .map(|(_, _, l, _)| l)
        .collect()
}

fn tailer(dir: &Path, saved: positions::Positions) -> Tailer {
    let mut t = Tailer::new(
        opts(&[format!("{}/*.log", dir.display())], ""),
        saved,
        Arc::new(Stats::default()),
    );
    t.scan();
    t
}

#[test]
fn partial_lines_rotation_truncation_deletion() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.log");
    append(&a, "one\ntwo\r\nthr");
    let mut t = tailer(tmp.path(), Default::default());
    assert_eq!(lines(&mut t), ["one", "two"]);
    // The last line waits for its newline; the position stays at its start.
    assert_eq!(lines(&mut t), Vec::<String>::new());
    assert_eq!(t.positions()[&a].offset, 9);
    append(&a, "ee\n");
    assert_eq!(lines(&mut t), ["three"]);
    assert_eq!(t.positions()[&a].offset, 15);

    // Rotation: rename, the writer still appends to the old file, then a new file appears.
    append(&a, "old1\n");
    let rotated = tmp.path().join("a.log.1");
    std::fs::rename(&a, &rotated).unwrap();
    append(&rotated, "old2\nold-unterminated");
    append(&a, "new1\n");
    assert_eq!(
        lines(&mut t),
        ["old1", "old2", "old-unterminated", "new1"],
        "old file finished first, then the new one from 0"
    );
    let ino = std::fs::metadata(&a).unwrap();
    assert_eq!(
        t.positions()[&a],
        positions::Position {
            dev: std::os::unix::fs::MetadataExt::dev(&ino),
            ino: std::os::unix::fs::MetadataExt::ino(&ino),
            offset: 5
        }
    );

    // copytruncate: the file shrinks below our offset and is read from 0.
    append(&a, "new2\n");
    assert_eq!(lines(&mut t), ["new2"]);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&a)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&a, "z\n");
    assert_eq!(lines(&mut t), ["z"]);

    // Deleted: dropped from the followed files and the positions.
    std::fs::remove_file(&a).unwrap();
    assert_eq!(lines(&mut t), Vec::<String>::new());
    assert!(t.followed().is_empty());
    assert!(t.positions().is_empty());

    // A new file appears: found by the next scan, read from 0.
    let b = tmp.path().join("b.log");
    append(&b, "b1\n");
    t.scan();
    assert_eq!(lines(&mut t), ["b1"]);
}

#[test]
fn long_lines_are_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.log");
    let long = "x".repeat(5000);
    append(&a, &format!("{long}\nshort\n{long}"));
    let stats = Arc::new(Stats::default());
    let mut t = Tailer::new(
        opts(&[format!("{}/*.log", tmp.path().display())], ""),
        Default::default(),
        stats.clone(),
    );
    t.scan();
    let got = lines(&mut t);
    assert_eq!(got, [&long[..100], "short"]);
    // The unterminated long line is held (capped) until its newline arrives.
    append(&a, "yyy\n");
    assert_eq!(lines(&mut t), [&long[..100]]);
    assert_eq!(
        stats.truncated.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    assert_eq!(stats.lines.load(std::sync::atomic::Ordering::Relaxed), 3);
}

#[test]
fn restart_from_positions_neither_loses_nor_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let pods = tmp.path().join("pods");
    let dir = pods.join("ns1_web_u1/app");
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("0.log");
    append(
        &f,
        "2024-01-01T00:00:00Z stdout F l1\n2024-01-01T00:00:01Z stdout P l2-a \n",
    );
    let glob = format!("{}/*/*/*.log", pods.display());
    let new = |saved| {
        let mut t = Tailer::new(opts(&[], &glob), saved, Arc::new(Stats::default()));
        t.scan();
        t
    };
    let mut t = new(Default::default());
    assert_eq!(lines(&mut t), ["l1"]);
    // The batch with l1 is queued: positions are saved. The partial l2 is not yet an entry, so
    // the position stays before it.
    let saved = t.positions();
    assert_eq!(saved[&f].offset, 33);
    drop(t);
    append(
        &f,
        "2024-01-01T00:00:02Z stdout F l2-b\n2024-01-01T00:00:03Z stderr F l3\n",
    );
    let mut t = new(saved);
    let mut got = lines(&mut t);
    got.sort();
    assert_eq!(got, ["l2-a l2-b", "l3"]);
    // A position that no longer fits the file (other inode) starts over.
    let mut wrong = t.positions();
    wrong.get_mut(&f).unwrap().ino += 1;
    let mut t = new(wrong);
    assert_eq!(lines(&mut t).len(), 3);
}

#[test]
fn tail_from_end_only_on_first_scan() {
    let tmp = tempfile::tempdir().unwrap();
    append(&tmp.path().join("old.log"), "history\n");
    let mut o = opts(&[format!("{}/*.log", tmp.path().display())], "");
    o.tail_from_end = true;
    let mut t = Tailer::new(o, Default::default(), Arc::new(Stats::default()));
    t.scan();
    assert_eq!(lines(&mut t), Vec::<String>::new());
    append(&tmp.path().join("old.log"), "fresh\n");
    append(&tmp.path().join("new.log"), "all of it\n");
    t.scan();
    let mut got = lines(&mut t);
    got.sort();
    assert_eq!(got, ["all of it", "fresh"]);
}

// ---- end to end -------------------------------------------------------------------------------

/// One accepted push: tenant header and decoded body.
type Got = (Option<String>, PushRequest);

#[derive(Clone, Default)]
struct Receiver {
    /// Statuses to answer before answering 204.
    script: Arc<Mutex<VecDeque<u16>>>,
    got: Arc<Mutex<Vec<Got>>>,
    content_types: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    /// (tenant, labels, line, ts_ns) of every accepted entry.
    fn entries(&self) -> Vec<(Option<String>, String, String, i64)> {
        let mut out = Vec::new();
        for (tenant, push) in self.got.lock().unwrap().iter() {
            for s in &push.streams {
                for e in &s.entries {
                    let t = e.timestamp.unwrap();
                    out.push((
                        tenant.clone(),
                        s.labels.clone(),
                        e.line.clone(),
                        t.seconds * 1_000_000_000 + t.nanos as i64,
                    ));
                }
            }
        }
        out
    }

    fn lines(&self) -> Vec<String> {
        self.entries().into_iter().map(|e| e.2).collect()
    }
}

async fn start_receiver(rx: Receiver) -> String {
    let app = axum::Router::new().route(
        "/loki/api/v1/push",
        post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let rx = rx.clone();
            async move {
                let h = |k: &str| headers.get(k).map(|v| v.to_str().unwrap().to_string());
                rx.content_types
                    .lock()
                    .unwrap()
                    .push(h("content-type").unwrap_or_default());
                let status = rx.script.lock().unwrap().pop_front().unwrap_or(204);
                if status == 204 {
                    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
                    let req = PushRequest::decode(raw.as_slice()).unwrap();
                    rx.got.lock().unwrap().push((h("x-scope-orgid"), req));
                }
                StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}/loki/api/v1/push")
}

async fn wait(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn config(url: &str, root: &Path) -> LogsConfig {
    LogsConfig {
        enabled: true,
        url: Some(url.into()),
        tenant: Some("infra".into()),
        pod_logs_glob: format!("{}/pods/*/*/*.log", root.display()),
        files: vec![format!("{}/var/*.log", root.display())],
        static_labels: [("cluster".to_string(), "c1".to_string())].into(),
        node_name: "node-1".into(),
        batch_max_wait: common::config::Duration::from_millis(50),
        poll_interval: common::config::Duration::from_millis(10),
        rescan_interval: common::config::Duration::from_millis(50),
        min_backoff: common::config::Duration::from_millis(10),
        max_backoff: common::config::Duration::from_millis(20),
        ..Default::default()
    }
}

fn start(cfg: &LogsConfig, data: &Path) -> (Logs, Vec<tokio::task::JoinHandle<()>>) {
    Logs::start(cfg, None, data, None).unwrap().unwrap()
}

async fn stop(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        t.abort();
        let _ = t.await;
    }
}

fn mkfile(root: &Path, rel: &str) -> PathBuf {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    p
}

const T0: i64 = 1_704_067_200_000_000_000; // 2024-01-01T00:00:00Z

#[tokio::test]
async fn ships_pod_logs_and_files_with_labels_tenants_and_retry() {
    let rx = Receiver::default();
    rx.script.lock().unwrap().push_back(500);
    let url = start_receiver(rx.clone()).await;
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let cri = mkfile(root.path(), "pods/shop_web-7d9f_u-1/nginx/0.log");
    append(
        &cri,
        "2024-01-01T00:00:00.123456789Z stdout F GET /\n\
         2024-01-01T00:00:01Z stderr P warn: \n\
         2024-01-01T00:00:02Z stderr F disk low\n\
         garbage\n",
    );
    let docker = mkfile(root.path(), "pods/db_pg-0_u-2/postgres/1.log");
    append(
        &docker,
        "{\"log\":\"ready\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-01T00:00:03.5Z\"}\n",
    );
    let syslog = mkfile(root.path(), "var/syslog.log");
    append(&syslog, "kernel: hello\n");
    let cfg = config(&url, root.path());
    let (logs, tasks) = start(&cfg, data.path());
    wait("all entries", || rx.entries().len() == 5).await;

    let mut got = rx.entries();
    got.sort_by(|a, b| (&a.0, &a.2).cmp(&(&b.0, &b.2)));
    let shop = r#"{app="web-7d9f", cluster="c1", container="nginx", job="shop/nginx", namespace="shop", node="node-1", pod="web-7d9f", service_name="nginx""#;
    let db = r#"{app="pg", cluster="c1", container="postgres", job="db/postgres", namespace="db", node="node-1", pod="pg-0", service_name="postgres", stream="stdout"}"#;
    let file = format!(
        r#"{{cluster="c1", filename="{}", host="node-1", job="varlogs"}}"#,
        syslog.display()
    );
    let t = |s: Option<&str>| s.map(str::to_string);
    assert_eq!(got[0].0, t(Some("db")));
    assert_eq!(
        (got[0].1.as_str(), got[0].2.as_str(), got[0].3),
        (db, "ready", T0 + 3_500_000_000)
    );
    assert_eq!(got[1].0, t(Some("infra")));
    assert_eq!(
        (got[1].1.as_str(), got[1].2.as_str()),
        (file.as_str(), "kernel: hello")
    );
    assert_eq!(got[2].0, t(Some("shop")));
    assert_eq!(got[2].1, format!("{shop}, stream=\"stdout\"}}"));
    assert_eq!((got[2].2.as_str(), got[2].3), ("GET /", T0 + 123_456_789));
    assert_eq!(got[3].0, t(Some("shop")));
    assert_eq!(
        got[3].1,
        format!("{shop}}}"),
        "malformed line: no stream label"
    );
    assert_eq!(got[3].2, "garbage");
    assert_eq!(got[4].0, t(Some("shop")));
    assert_eq!(got[4].1, format!("{shop}, stream=\"stderr\"}}"));
    assert_eq!(
        (got[4].2.as_str(), got[4].3),
        ("warn: disk low", T0 + 2_000_000_000)
    );
    assert!(rx
        .content_types
        .lock()
        .unwrap()
        .iter()
        .all(|c| c == "application/x-protobuf"));

    // The first push got a 500 and was retried; nothing was lost or sent twice.
    wait("metrics", || logs.forwarder().pending() == 0).await;
    let mut m = Families::new();
    logs.add_metrics(&mut m);
    let u = [("url", url.as_str())];
    assert_eq!(
        m.value("heimdall_agent_logs_push_retries_total", &u),
        Some(1.0)
    );
    assert_eq!(
        m.value("heimdall_agent_logs_entries_sent_total", &[]),
        Some(5.0)
    );
    assert_eq!(
        m.value("heimdall_agent_logs_entries_queued_total", &[]),
        Some(5.0)
    );
    assert_eq!(m.value("heimdall_agent_logs_files_tailed", &[]), Some(3.0));
    assert_eq!(
        m.value("heimdall_agent_logs_malformed_lines_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        m.value("heimdall_agent_logs_read_lines_total", &[]),
        Some(6.0)
    );
    stop(tasks).await;
}

#[tokio::test]
async fn restart_resumes_from_positions() {
    let rx = Receiver::default();
    let url = start_receiver(rx.clone()).await;
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let f = mkfile(root.path(), "var/app.log");
    append(&f, "1\n2\n");
    let cfg = config(&url, root.path());
    let positions_file = cfg.positions_path(data.path());
    let at = |off: u64| {
        let p = positions_file.clone();
        let f = f.clone();
        move || positions::load(&p).get(&f).map(|p| p.offset) == Some(off)
    };
    {
        let (logs, tasks) = start(&cfg, data.path());
        wait("first lines", || rx.lines().len() == 2).await;
        wait("positions", at(4)).await;
        wait("acknowledged", || logs.forwarder().pending() == 0).await;
        stop(tasks).await;
    }
    // Written while the agent is down, and after the restart.
    append(&f, "3\n");
    let (logs, tasks) = start(&cfg, data.path());
    append(&f, "4\n");
    wait("all lines", || rx.lines().len() >= 4).await;
    wait("positions", at(8)).await;
    assert_eq!(rx.lines(), ["1", "2", "3", "4"]);
    assert_eq!(logs.forwarder().pending(), 0);
    stop(tasks).await;
}

#[tokio::test]
async fn rejected_pushes_are_dropped_and_counted() {
    let rx = Receiver::default();
    rx.script.lock().unwrap().push_back(400);
    let url = start_receiver(rx.clone()).await;
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let f = mkfile(root.path(), "var/app.log");
    append(&f, "bad\n");
    let cfg = config(&url, root.path());
    let (logs, tasks) = start(&cfg, data.path());
    wait("drop", || logs.forwarder().items_dropped() == 1).await;
    append(&f, "good\n");
    wait("next line", || rx.lines() == ["good"]).await;
    let mut m = Families::new();
    logs.add_metrics(&mut m);
    assert_eq!(
        m.value("heimdall_agent_logs_entries_dropped_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            "heimdall_agent_logs_push_retries_total",
            &[("url", url.as_str())]
        ),
        Some(0.0)
    );
    stop(tasks).await;
}

#[tokio::test]
async fn full_buffer_pauses_tailing_instead_of_dropping() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let f = mkfile(root.path(), "var/app.log");
    let want: Vec<String> = (0..2000).map(|i| format!("line {i:05}")).collect();
    append(&f, &(want.join("\n") + "\n"));
    // Nothing listens here: every push fails and stays buffered.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/loki/api/v1/push", l.local_addr().unwrap())
    };
    let mut cfg = config(&dead, root.path());
    cfg.max_line_bytes = 512;
    cfg.batch_max_bytes = 1024;
    cfg.max_buffer_bytes = 4096;
    {
        let (logs, tasks) = start(&cfg, data.path());
        wait("some batches", || logs.forwarder().pending() >= 2).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(logs.forwarder().items_dropped(), 0);
        assert!(logs.forwarder().buffer_bytes() <= 4096);
        let queued = logs
            .stats()
            .queued
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(queued > 0 && queued < 2000, "tailing paused after {queued}");
        stop(tasks).await;
    }
    // With the endpoint back, everything arrives exactly once and in order.
    let rx = Receiver::default();
    cfg.url = Some(start_receiver(rx.clone()).await);
    let (_logs, tasks) = start(&cfg, data.path());
    wait("all lines", || rx.lines().len() >= 2000).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(rx.lines(), want);
    stop(tasks).await;
}

#[test]
fn batches_stay_bounded_and_resume_mid_chunk() {
    let tmp = tempfile::tempdir().unwrap();
    let want: Vec<String> = (0..100).map(|i| format!("line {i:04}")).collect();
    append(&tmp.path().join("a.log"), &(want.join("\n") + "\n"));
    let mut t = tailer(tmp.path(), Default::default());
    let mut got = Vec::new();
    for _ in 0..100 {
        let mut b = Batch::default();
        t.poll(&mut b, 200);
        assert!(b.bytes() < 200 + 9 + 16, "{}", b.bytes());
        if b.is_empty() {
            break;
        }
        got.extend(decode(&b.into_requests().unwrap()).into_iter().map(|e| e.2));
    }
    assert_eq!(got, want);
}
