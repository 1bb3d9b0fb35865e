//! Durable remote_write forwarding.
//!
//! Every batch (a snappy-compressed remote_write 1.0 `WriteRequest`, ready to POST) is appended to a
//! [`storage::Wal`] and the WAL is cut right after it, so each batch owns one segment. The sender
//! POSTs batches in order; once the endpoint acknowledges one (2xx) — or rejects it for good (4xx
//! other than 429, logged and dropped) — its segment number is recorded in `acked` and older segments
//! are deleted. After a restart the WAL replays every segment above `acked`: un-acknowledged batches
//! are sent again (at-least-once; receivers ignore exact duplicates). 5xx, 429 and network errors are
//! retried forever with exponential backoff; the on-disk backlog is capped by `max_buffer_bytes`,
//! beyond which the oldest batches are dropped with a warning.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prost::Message;
use proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use storage::{Wal, WalOptions};

use crate::exposition::{Families, MetricType};
use crate::{Error, RemoteWriteConfig};

/// Converts collected families into one remote_write request at `ts_ms`, adding `extra` labels
/// (which do not override a series' own labels), with each family's type and help as metadata.
pub fn to_write_request(fams: &Families, ts_ms: i64, extra: &[(String, String)]) -> WriteRequest {
    use proto::prometheus::metric_metadata::MetricType as MetaType;
    use proto::prometheus::MetricMetadata;
    let mut timeseries = Vec::with_capacity(fams.series_count());
    let mut metadata = Vec::new();
    for (name, fam) in fams.iter() {
        metadata.push(MetricMetadata {
            r#type: match fam.typ {
                MetricType::Counter => MetaType::Counter,
                MetricType::Gauge => MetaType::Gauge,
                MetricType::Untyped => MetaType::Unknown,
            } as i32,
            metric_family_name: name.clone(),
            help: fam.help.clone(),
            unit: String::new(),
        });
        for (labels, v) in &fam.series {
            let mut ls: Vec<Label> = Vec::with_capacity(labels.len() + extra.len() + 1);
            ls.push(Label {
                name: "__name__".into(),
                value: name.clone(),
            });
            for (n, v) in labels {
                ls.push(Label {
                    name: n.clone(),
                    value: v.clone(),
                });
            }
            for (n, v) in extra {
                if !labels.iter().any(|(k, _)| k == n) {
                    ls.push(Label {
                        name: n.clone(),
                        value: v.clone(),
                    });
                }
            }
            ls.sort_by(|a, b| a.name.cmp(&b.name));
            timeseries.push(TimeSeries {
                labels: ls,
                samples: vec![Sample {
                    value: *v,
                    timestamp: ts_ms,
                }],
                ..Default::default()
            });
        }
    }
    WriteRequest {
        timeseries,
        metadata,
    }
}

/// A batch waiting for acknowledgement.
#[derive(Clone)]
struct Batch {
    segment: u64,
    body: Arc<Vec<u8>>,
}

/// What to do after one POST.
enum Outcome {
    Sent,
    Rejected(String),
    Retry(String),
}

/// Sends collected samples to one remote_write endpoint through a durable buffer. Cheap to clone.
#[derive(Clone)]
pub struct RemoteWriteForwarder {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: RemoteWriteConfig,
    wal: Wal,
    /// flock'ed while the forwarder lives.
    _lock: std::fs::File,
    acked_path: PathBuf,
    acked: Mutex<u64>,
    queue: Mutex<VecDeque<Batch>>,
    /// Serialises append + cut so that each batch owns one segment.
    append_lock: tokio::sync::Mutex<()>,
    notify: tokio::sync::Notify,
    client: reqwest::Client,
    sent: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
}

impl RemoteWriteForwarder {
    /// Opens (or creates) the buffer under `data_dir/remote_write` and loads un-acknowledged batches.
    pub fn open(cfg: RemoteWriteConfig, data_dir: &Path) -> Result<Self, Error> {
        cfg.validate()?;
        let dir = data_dir.join("remote_write");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        // The WAL must not be opened twice at once: hold an exclusive lock for our lifetime.
        let lock_path = dir.join("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |e| {
                Error::Config(format!(
                    "{} is in use by another agent ({e}); give each agent its own data_dir",
                    dir.display()
                ))
            },
        )?;
        let acked_path = dir.join("acked");
        let acked: u64 = match std::fs::read_to_string(&acked_path) {
            Ok(s) => s
                .trim()
                .parse()
                .map_err(|_| Error::parse(&acked_path, format!("invalid segment number {s:?}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(Error::io(&acked_path, e)),
        };
        let mut pending = VecDeque::new();
        let wal = Wal::open(&dir.join("wal"), WalOptions::default(), |seg, rec| {
            if seg > acked {
                pending.push_back(Batch {
                    segment: seg,
                    body: Arc::new(rec.to_vec()),
                });
            }
            Ok(())
        })?;
        wal.truncate_before(acked + 1)?;
        if !pending.is_empty() {
            tracing::info!(url = %cfg.url, batches = pending.len(), "re-sending un-acknowledged batches");
        }
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout.to_std())
            .user_agent(concat!("heimdall-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Send(format!("building http client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                wal,
                _lock: lock,
                acked_path,
                acked: Mutex::new(acked),
                queue: Mutex::new(pending),
                append_lock: tokio::sync::Mutex::new(()),
                notify: tokio::sync::Notify::new(),
                client,
                sent: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                retries: AtomicU64::new(0),
            }),
        })
    }

    /// Durably buffers one request; returns once it is in the WAL. Empty requests are ignored.
    pub async fn enqueue(&self, req: &WriteRequest) -> Result<(), Error> {
        if req.timeseries.is_empty() && req.metadata.is_empty() {
            return Ok(());
        }
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .map_err(|e| Error::Send(format!("snappy: {e}")))?;
        let _g = self.inner.append_lock.lock().await;
        let segment = self.inner.wal.append(body.clone()).await?;
        let wal = self.inner.wal.clone();
        tokio::task::spawn_blocking(move || wal.cut_segment())
            .await
            .map_err(|e| Error::Send(format!("wal cut task: {e}")))??;
        {
            let mut q = self.queue();
            q.push_back(Batch {
                segment,
                body: Arc::new(body),
            });
        }
        self.enforce_cap();
        self.inner.notify.notify_one();
        Ok(())
    }

    /// Batches buffered and not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.queue().len()
    }

    /// Adds the forwarder's own counters (`heimdall_agent_remote_write_*`).
    pub fn add_metrics(&self, out: &mut Families) {
        let i = &self.inner;
        let url = [("url", i.cfg.url.as_str())];
        out.add(
            "heimdall_agent_remote_write_pending_batches",
            "Batches buffered on disk and not yet acknowledged.",
            MetricType::Gauge,
            &url,
            self.pending() as f64,
        );
        out.add(
            "heimdall_agent_remote_write_buffer_bytes",
            "Bytes of the durable buffer on disk.",
            MetricType::Gauge,
            &url,
            i.wal.disk_size() as f64,
        );
        for (name, help, c) in [
            (
                "heimdall_agent_remote_write_sent_batches_total",
                "Batches acknowledged by the endpoint.",
                &i.sent,
            ),
            (
                "heimdall_agent_remote_write_dropped_batches_total",
                "Batches dropped: rejected with a 4xx or over the buffer cap.",
                &i.dropped,
            ),
            (
                "heimdall_agent_remote_write_retries_total",
                "Failed sends that were retried.",
                &i.retries,
            ),
        ] {
            out.add(
                name,
                help,
                MetricType::Counter,
                &url,
                c.load(Ordering::Relaxed) as f64,
            );
        }
    }

    /// Sends buffered batches in order, forever. Spawn it once; abort the task to stop (the buffer
    /// stays on disk and is re-sent by the next [`RemoteWriteForwarder::open`]).
    pub async fn run(self) {
        loop {
            let notified = self.inner.notify.notified();
            let next = self.queue().front().cloned();
            let Some(batch) = next else {
                notified.await;
                continue;
            };
            let mut backoff = self.inner.cfg.min_backoff.to_std();
            loop {
                match self.send(&batch.body).await {
                    Outcome::Sent => {
                        self.inner.sent.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Outcome::Rejected(why) => {
                        self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(url = %self.inner.cfg.url, segment = batch.segment, reason = %why, "remote_write rejected batch, dropping it");
                        break;
                    }
                    Outcome::Retry(why) => {
                        self.inner.retries.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(url = %self.inner.cfg.url, segment = batch.segment, reason = %why, retry_in = ?backoff, "remote_write failed, will retry");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(self.inner.cfg.max_backoff.to_std());
                        // The cap may have dropped this batch meanwhile.
                        if self.queue().front().map(|b| b.segment) != Some(batch.segment) {
                            break;
                        }
                    }
                }
            }
            self.ack(batch.segment);
        }
    }

    async fn send(&self, body: &Arc<Vec<u8>>) -> Outcome {
        let cfg = &self.inner.cfg;
        let mut req = self
            .inner
            .client
            .post(&cfg.url)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body.as_ref().clone());
        if let Some(t) = &cfg.tenant {
            req = req.header("X-Scope-OrgID", t);
        }
        if let Some(t) = &cfg.bearer_token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Err(e) => Outcome::Retry(e.to_string()),
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    return Outcome::Sent;
                }
                let text = resp.text().await.unwrap_or_default();
                let msg = format!("{status}: {}", text.chars().take(512).collect::<String>());
                if status.is_server_error() || status.as_u16() == 429 {
                    Outcome::Retry(msg)
                } else {
                    Outcome::Rejected(msg)
                }
            }
        }
    }

    /// Marks everything up to `segment` acknowledged: pops it from the queue, records it, deletes
    /// older segments.
    fn ack(&self, segment: u64) {
        self.queue().retain(|b| b.segment > segment);
        let mut acked = self.inner.acked.lock().unwrap_or_else(|p| p.into_inner());
        if segment <= *acked {
            return;
        }
        *acked = segment;
        let tmp = self.inner.acked_path.with_extension("tmp");
        let r = std::fs::write(&tmp, format!("{segment}\n"))
            .and_then(|_| std::fs::rename(&tmp, &self.inner.acked_path));
        if let Err(e) = r {
            // Not fatal: the batch would be sent again after a restart.
            tracing::warn!(path = %self.inner.acked_path.display(), error = %e, "recording acknowledged segment failed");
            return;
        }
        if let Err(e) = self.inner.wal.truncate_before(segment + 1) {
            tracing::warn!(error = %e, "deleting acknowledged segments failed");
        }
    }

    fn enforce_cap(&self) {
        loop {
            if self.inner.wal.disk_size() <= self.inner.cfg.max_buffer_bytes {
                return;
            }
            let oldest = {
                let q = self.queue();
                if q.len() <= 1 {
                    return;
                }
                q.front().map(|b| b.segment)
            };
            let Some(seg) = oldest else { return };
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(url = %self.inner.cfg.url, segment = seg, max_buffer_bytes = self.inner.cfg.max_buffer_bytes, "remote_write buffer full, dropping oldest batch");
            self.ack(seg);
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Batch>> {
        self.inner.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    use super::*;
    use crate::exposition::Families;

    /// What the test receiver recorded per accepted request: body, tenant header, authorization.
    type Received = (WriteRequest, Option<String>, Option<String>);

    /// A receiver that answers with the next status of `script` (then 204) and records what it got.
    #[derive(Clone, Default)]
    struct Receiver {
        script: Arc<StdMutex<VecDeque<u16>>>,
        got: Arc<StdMutex<Vec<Received>>>,
    }

    async fn start(rx: Receiver) -> String {
        let app = axum::Router::new().route(
            "/api/v1/push",
            post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let rx = rx.clone();
                async move {
                    let status = rx.script.lock().unwrap().pop_front().unwrap_or(204);
                    if status == 204 {
                        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
                        let req = WriteRequest::decode(raw.as_slice()).unwrap();
                        let h = |k: &str| headers.get(k).map(|v| v.to_str().unwrap().to_string());
                        rx.got
                            .lock()
                            .unwrap()
                            .push((req, h("x-scope-orgid"), h("authorization")));
                    }
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        format!("http://{addr}/api/v1/push")
    }

    fn cfg(url: &str) -> RemoteWriteConfig {
        RemoteWriteConfig {
            url: url.into(),
            tenant: Some("t1".into()),
            bearer_token: Some("secret".into()),
            min_backoff: common::config::Duration::from_millis(10),
            max_backoff: common::config::Duration::from_millis(40),
            ..Default::default()
        }
    }

    fn req(v: f64) -> WriteRequest {
        let mut f = Families::new();
        f.gauge("node_load1", "1m load average.", v);
        to_write_request(&f, 1000, &[("job".into(), "node".into())])
    }

    async fn wait(mut f: impl FnMut() -> bool) {
        for _ in 0..500 {
            if f() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("condition not reached");
    }

    #[test]
    fn write_request_labels_sorted_with_extras() {
        let mut f = Families::new();
        f.add(
            "m",
            "h",
            MetricType::Gauge,
            &[("job", "own"), ("a", "1")],
            2.0,
        );
        let r = to_write_request(
            &f,
            5,
            &[("job".into(), "x".into()), ("instance".into(), "h".into())],
        );
        let names: Vec<(&str, &str)> = r.timeseries[0]
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("__name__", "m"),
                ("a", "1"),
                ("instance", "h"),
                ("job", "own")
            ]
        );
        assert_eq!(
            r.timeseries[0].samples,
            vec![Sample {
                value: 2.0,
                timestamp: 5
            }]
        );
        assert_eq!(r.metadata.len(), 1);
        assert_eq!(r.metadata[0].metric_family_name, "m");
        assert_eq!(r.metadata[0].help, "h");
        assert_eq!(r.metadata[0].r#type, 2);
    }

    #[tokio::test]
    async fn retries_5xx_and_429_drops_4xx_and_acks() {
        let rx = Receiver::default();
        rx.script.lock().unwrap().extend([500, 429, 204, 400]);
        let url = start(rx.clone()).await;
        let tmp = tempfile::tempdir().unwrap();
        let fwd = RemoteWriteForwarder::open(cfg(&url), tmp.path()).unwrap();
        let task = tokio::spawn(fwd.clone().run());
        fwd.enqueue(&req(1.0)).await.unwrap();
        fwd.enqueue(&req(2.0)).await.unwrap();
        fwd.enqueue(&req(3.0)).await.unwrap();
        wait(|| fwd.pending() == 0).await;
        task.abort();
        let got = rx.got.lock().unwrap();
        // Batch 1 after two retries; batch 2 rejected with 400 and dropped; batch 3 sent.
        let values: Vec<f64> = got
            .iter()
            .map(|(r, _, _)| r.timeseries[0].samples[0].value)
            .collect();
        assert_eq!(values, vec![1.0, 3.0]);
        assert_eq!(got[0].1.as_deref(), Some("t1"));
        assert_eq!(got[0].2.as_deref(), Some("Bearer secret"));
        let mut m = Families::new();
        fwd.add_metrics(&mut m);
        let l = [("url", url.as_str())];
        assert_eq!(
            m.value("heimdall_agent_remote_write_retries_total", &l),
            Some(2.0)
        );
        assert_eq!(
            m.value("heimdall_agent_remote_write_dropped_batches_total", &l),
            Some(1.0)
        );
        assert_eq!(
            m.value("heimdall_agent_remote_write_sent_batches_total", &l),
            Some(2.0)
        );
        // Acknowledged segments are gone from disk.
        let segs = std::fs::read_dir(tmp.path().join("remote_write/wal"))
            .unwrap()
            .count();
        assert_eq!(segs, 1, "only the active segment remains");
    }

    #[tokio::test]
    async fn unacknowledged_batches_survive_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        // Nothing listens on this port: every send fails, nothing is acknowledged.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/api/v1/push", l.local_addr().unwrap())
        };
        {
            let fwd = RemoteWriteForwarder::open(cfg(&dead), tmp.path()).unwrap();
            let task = tokio::spawn(fwd.clone().run());
            for v in [1.0, 2.0, 3.0] {
                fwd.enqueue(&req(v)).await.unwrap();
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            assert_eq!(fwd.pending(), 3);
            task.abort();
            let _ = task.await;
        }
        let rx = Receiver::default();
        let url = start(rx.clone()).await;
        {
            let fwd = RemoteWriteForwarder::open(cfg(&url), tmp.path()).unwrap();
            assert_eq!(fwd.pending(), 3);
            let task = tokio::spawn(fwd.clone().run());
            wait(|| fwd.pending() == 0).await;
            task.abort();
            let _ = task.await;
        }
        let values: Vec<f64> = rx
            .got
            .lock()
            .unwrap()
            .iter()
            .map(|(r, _, _)| r.timeseries[0].samples[0].value)
            .collect();
        assert_eq!(values, vec![1.0, 2.0, 3.0]);
        // Everything acknowledged: a third start has nothing to send.
        let fwd = RemoteWriteForwarder::open(cfg(&url), tmp.path()).unwrap();
        assert_eq!(fwd.pending(), 0);
    }

    #[tokio::test]
    async fn data_dir_is_exclusive() {
        let tmp = tempfile::tempdir().unwrap();
        let a = RemoteWriteForwarder::open(cfg("http://127.0.0.1:9/x"), tmp.path()).unwrap();
        let err = RemoteWriteForwarder::open(cfg("http://127.0.0.1:9/x"), tmp.path())
            .err()
            .unwrap();
        assert!(err.to_string().contains("in use"), "{err}");
        drop(a);
        RemoteWriteForwarder::open(cfg("http://127.0.0.1:9/x"), tmp.path()).unwrap();
    }

    #[tokio::test]
    async fn buffer_cap_drops_oldest() {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = cfg("http://127.0.0.1:9/api/v1/push");
        c.max_buffer_bytes = 1;
        let fwd = RemoteWriteForwarder::open(c, tmp.path()).unwrap();
        for v in [1.0, 2.0, 3.0] {
            fwd.enqueue(&req(v)).await.unwrap();
        }
        // Only the newest batch is kept.
        assert_eq!(fwd.pending(), 1);
        drop(fwd);
        let fwd = RemoteWriteForwarder::open(cfg("http://127.0.0.1:9/x"), tmp.path()).unwrap();
        assert_eq!(fwd.pending(), 1);
    }
}
