//! Durable forwarding: remote_write and Loki push share one [`Forwarder`].
//!
//! Every batch (one or more requests, each a compressed body ready to POST plus its tenant) is
//! appended to a [`storage::Wal`] as one record and the WAL is cut right after it, so each batch owns
//! one segment and is buffered whole or not at all. The sender POSTs requests in order; once the
//! endpoint acknowledges one (2xx) — or rejects it for good (4xx other than 429, logged and dropped) —
//! its position (segment, and index within the batch unless the batch is complete) is recorded in
//! `acked` and fully acknowledged segments are deleted. After a restart the WAL replays everything
//! after `acked`: un-acknowledged requests are sent again (at-least-once; receivers ignore exact
//! duplicates). 5xx, 429 and network errors are retried forever with exponential backoff (each wait
//! jittered between half and all of it, so agents that lost the same endpoint do not retry in
//! lockstep when it returns); the
//! on-disk backlog is capped by `max_buffer_bytes`, beyond which the oldest requests are dropped
//! with a warning.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::config::Duration;
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

/// One HTTP request to send: a body ready to POST and the tenant it belongs to.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// Sent as `X-Scope-OrgID`; `None` uses the forwarder's default tenant (if any).
    pub tenant: Option<String>,
    /// The request body, already encoded and compressed.
    pub body: Vec<u8>,
    /// How many items (samples, log entries) the body holds, for the caller's counters.
    pub items: u64,
}

/// How a [`Forwarder`] talks to its endpoint.
#[derive(Clone, Debug)]
pub struct ForwarderConfig {
    /// Prefix of the forwarder's own metrics, e.g. `heimdall_agent_remote_write`.
    pub metric_prefix: &'static str,
    /// What the endpoint is called in log messages, e.g. `remote_write`.
    pub kind: &'static str,
    /// Endpoint URL.
    pub url: String,
    /// Default `X-Scope-OrgID` for requests without their own tenant.
    pub tenant: Option<String>,
    /// Sent as `Authorization: Bearer …` when set.
    pub bearer_token: Option<String>,
    /// Protocol headers sent with every request (`Content-Type`, …).
    pub headers: Vec<(&'static str, &'static str)>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// First retry delay; doubles per failure up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Cap on un-acknowledged data kept on disk; beyond it the oldest requests are dropped.
    pub max_buffer_bytes: u64,
}

impl ForwarderConfig {
    /// The remote_write 1.0 protocol to `cfg.url`.
    pub fn remote_write(cfg: &RemoteWriteConfig) -> Self {
        Self {
            metric_prefix: "heimdall_agent_remote_write",
            kind: "remote_write",
            url: cfg.url.clone(),
            tenant: cfg.tenant.clone(),
            bearer_token: cfg.bearer_token.clone(),
            headers: vec![
                ("Content-Type", "application/x-protobuf"),
                ("Content-Encoding", "snappy"),
                ("X-Prometheus-Remote-Write-Version", "0.1.0"),
            ],
            timeout: cfg.timeout,
            min_backoff: cfg.min_backoff,
            max_backoff: cfg.max_backoff,
            max_buffer_bytes: cfg.max_buffer_bytes,
        }
    }
}

/// A WAL record: the requests of one batch, written at once so a batch is buffered whole or not at
/// all. Prefixed with [`RECORD_MAGIC`]; a record without it is a bare remote_write body written by
/// an older agent (one request, default tenant).
#[derive(Clone, PartialEq, prost::Message)]
struct Record {
    #[prost(message, repeated, tag = "1")]
    parts: Vec<RecordPart>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RecordPart {
    #[prost(string, optional, tag = "1")]
    tenant: Option<String>,
    #[prost(bytes = "vec", tag = "2")]
    body: Vec<u8>,
    #[prost(uint64, tag = "3")]
    items: u64,
}

/// No snappy block starts with these bytes (after a one-byte length, the first element must be a
/// literal, and `'F'` is a copy tag), so old bare bodies and framed records cannot be confused.
const RECORD_MAGIC: &[u8] = b"HF\x01";

fn encode_record(reqs: Vec<Request>) -> Vec<u8> {
    let rec = Record {
        parts: reqs
            .into_iter()
            .map(|r| RecordPart {
                tenant: r.tenant,
                body: r.body,
                items: r.items,
            })
            .collect(),
    };
    let mut out = Vec::with_capacity(RECORD_MAGIC.len() + rec.encoded_len());
    out.extend_from_slice(RECORD_MAGIC);
    rec.encode(&mut out).expect("vec has capacity");
    out
}

fn decode_record(rec: &[u8]) -> Result<Vec<RecordPart>, String> {
    match rec.strip_prefix(RECORD_MAGIC) {
        Some(r) => Record::decode(r)
            .map(|r| r.parts)
            .map_err(|e| format!("undecodable buffered batch: {e}")),
        None => Ok(vec![RecordPart {
            tenant: None,
            body: rec.to_vec(),
            items: 0,
        }]),
    }
}

/// Position of one request in the buffer: (segment, index within the segment's record).
type Key = (u64, u32);

/// A request waiting for acknowledgement.
#[derive(Clone)]
struct Pending {
    key: Key,
    /// The last request of its segment: acknowledging it frees the segment.
    last: bool,
    tenant: Option<String>,
    body: Arc<Vec<u8>>,
    items: u64,
}

/// What to do after one POST.
enum Outcome {
    Sent,
    Rejected(String),
    Retry(String),
}

/// Sends requests to one HTTP endpoint, in order, through a durable on-disk buffer; shared by
/// remote_write and Loki push. Cheap to clone.
#[derive(Clone)]
pub struct Forwarder {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: ForwarderConfig,
    wal: Wal,
    /// flock'ed while the forwarder lives.
    _lock: std::fs::File,
    acked_path: PathBuf,
    /// Everything up to and including this key is acknowledged.
    acked: Mutex<Key>,
    queue: Mutex<VecDeque<Pending>>,
    /// Serialises append + cut so that each batch owns one segment.
    append_lock: tokio::sync::Mutex<()>,
    notify: tokio::sync::Notify,
    client: reqwest::Client,
    sent: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
    items_sent: AtomicU64,
    items_dropped: AtomicU64,
}

/// A whole segment acknowledged is stored as `(segment, u32::MAX)`.
const WHOLE: u32 = u32::MAX;

fn parse_acked(s: &str) -> Option<Key> {
    let mut it = s.split_whitespace();
    let seg = it.next()?.parse().ok()?;
    let idx = match it.next() {
        None => WHOLE,
        Some(i) => i.parse().ok()?,
    };
    it.next().is_none().then_some((seg, idx))
}

impl Forwarder {
    /// Opens (or creates) the buffer in `dir` (one directory per forwarder) and loads
    /// un-acknowledged requests.
    pub fn open(cfg: ForwarderConfig, dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
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
        let acked: Key = match std::fs::read_to_string(&acked_path) {
            Ok(s) => parse_acked(&s)
                .ok_or_else(|| Error::parse(&acked_path, format!("invalid position {s:?}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, WHOLE),
            Err(e) => return Err(Error::io(&acked_path, e)),
        };
        let mut pending = VecDeque::new();
        let wal = Wal::open(&dir.join("wal"), WalOptions::default(), |seg, rec| {
            if seg < acked.0 || (seg == acked.0 && acked.1 == WHOLE) {
                return Ok(());
            }
            let parts = match decode_record(rec) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(segment = seg, error = %e, "skipping buffered batch");
                    return Ok(());
                }
            };
            let n = parts.len();
            for (i, p) in parts.into_iter().enumerate() {
                let key = (seg, i as u32);
                if key > acked {
                    pending.push_back(Pending {
                        key,
                        last: i + 1 == n,
                        tenant: p.tenant,
                        body: Arc::new(p.body),
                        items: p.items,
                    });
                }
            }
            Ok(())
        })?;
        let whole = if acked.1 == WHOLE {
            acked.0
        } else {
            acked.0.saturating_sub(1)
        };
        wal.truncate_before(whole + 1)?;
        if !pending.is_empty() {
            tracing::info!(url = %cfg.url, requests = pending.len(), "re-sending un-acknowledged batches");
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
                items_sent: AtomicU64::new(0),
                items_dropped: AtomicU64::new(0),
            }),
        })
    }

    /// Durably buffers one batch of requests (all or none of them); returns once they are in the
    /// WAL. They are sent in order. An empty batch is ignored.
    pub async fn enqueue(&self, reqs: Vec<Request>) -> Result<(), Error> {
        if reqs.is_empty() {
            return Ok(());
        }
        let meta: Vec<(Option<String>, u64)> =
            reqs.iter().map(|r| (r.tenant.clone(), r.items)).collect();
        let bodies: Vec<Vec<u8>> = reqs.iter().map(|r| r.body.clone()).collect();
        let record = encode_record(reqs);
        let _g = self.inner.append_lock.lock().await;
        let segment = self.inner.wal.append(record).await?;
        let wal = self.inner.wal.clone();
        tokio::task::spawn_blocking(move || wal.cut_segment())
            .await
            .map_err(|e| Error::Send(format!("wal cut task: {e}")))??;
        {
            let n = bodies.len();
            let mut q = self.queue();
            for (i, (body, (tenant, items))) in bodies.into_iter().zip(meta).enumerate() {
                q.push_back(Pending {
                    key: (segment, i as u32),
                    last: i + 1 == n,
                    tenant,
                    body: Arc::new(body),
                    items,
                });
            }
        }
        self.enforce_cap();
        self.inner.notify.notify_one();
        Ok(())
    }

    /// Requests buffered and not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.queue().len()
    }

    /// Bytes of the durable buffer on disk (callers that can wait use it for backpressure).
    pub fn buffer_bytes(&self) -> u64 {
        self.inner.wal.disk_size()
    }

    /// The configured cap on [`Forwarder::buffer_bytes`].
    pub fn max_buffer_bytes(&self) -> u64 {
        self.inner.cfg.max_buffer_bytes
    }

    /// Items of acknowledged requests so far.
    pub fn items_sent(&self) -> u64 {
        self.inner.items_sent.load(Ordering::Relaxed)
    }

    /// Items of requests dropped so far (rejected with a 4xx, or over the buffer cap).
    pub fn items_dropped(&self) -> u64 {
        self.inner.items_dropped.load(Ordering::Relaxed)
    }

    /// Adds the forwarder's own counters (`<metric_prefix>_*`, label `url`).
    pub fn add_metrics(&self, out: &mut Families) {
        let i = &self.inner;
        let p = i.cfg.metric_prefix;
        let url = [("url", i.cfg.url.as_str())];
        out.add(
            &format!("{p}_pending_batches"),
            "Batches buffered on disk and not yet acknowledged.",
            MetricType::Gauge,
            &url,
            self.pending() as f64,
        );
        out.add(
            &format!("{p}_buffer_bytes"),
            "Bytes of the durable buffer on disk.",
            MetricType::Gauge,
            &url,
            i.wal.disk_size() as f64,
        );
        for (name, help, c) in [
            (
                "sent_batches_total",
                "Batches acknowledged by the endpoint.",
                &i.sent,
            ),
            (
                "dropped_batches_total",
                "Batches dropped: rejected with a 4xx or over the buffer cap.",
                &i.dropped,
            ),
            (
                "retries_total",
                "Failed sends that were retried.",
                &i.retries,
            ),
        ] {
            out.add(
                &format!("{p}_{name}"),
                help,
                MetricType::Counter,
                &url,
                c.load(Ordering::Relaxed) as f64,
            );
        }
    }

    /// Sends buffered requests in order, forever. Spawn it once; abort the task to stop (the buffer
    /// stays on disk and is re-sent by the next [`Forwarder::open`]).
    pub async fn run(self) {
        let kind = self.inner.cfg.kind;
        loop {
            let notified = self.inner.notify.notified();
            let next = self.queue().front().cloned();
            let Some(req) = next else {
                notified.await;
                continue;
            };
            let mut backoff = self.inner.cfg.min_backoff.to_std();
            loop {
                match self.send(&req).await {
                    Outcome::Sent => {
                        self.inner.sent.fetch_add(1, Ordering::Relaxed);
                        self.inner
                            .items_sent
                            .fetch_add(req.items, Ordering::Relaxed);
                        break;
                    }
                    Outcome::Rejected(why) => {
                        self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                        self.inner
                            .items_dropped
                            .fetch_add(req.items, Ordering::Relaxed);
                        tracing::warn!(kind, url = %self.inner.cfg.url, tenant = ?req.tenant, segment = req.key.0, reason = %why, "endpoint rejected batch, dropping it");
                        break;
                    }
                    Outcome::Retry(why) => {
                        self.inner.retries.fetch_add(1, Ordering::Relaxed);
                        let wait = jittered(backoff);
                        tracing::warn!(kind, url = %self.inner.cfg.url, segment = req.key.0, reason = %why, retry_in = ?wait, "send failed, will retry");
                        tokio::time::sleep(wait).await;
                        backoff = (backoff * 2).min(self.inner.cfg.max_backoff.to_std());
                        // The cap may have dropped this request meanwhile.
                        if self.queue().front().map(|b| b.key) != Some(req.key) {
                            break;
                        }
                    }
                }
            }
            self.ack(req.key, req.last);
        }
    }

    async fn send(&self, p: &Pending) -> Outcome {
        let cfg = &self.inner.cfg;
        let mut req = self
            .inner
            .client
            .post(&cfg.url)
            .body(p.body.as_ref().clone());
        for (k, v) in &cfg.headers {
            req = req.header(*k, *v);
        }
        if let Some(t) = p.tenant.as_ref().or(cfg.tenant.as_ref()) {
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

    /// Marks everything up to `key` acknowledged: pops it from the queue, records it, and deletes
    /// fully acknowledged segments (`last`: `key` ends its segment).
    fn ack(&self, key: Key, last: bool) {
        let key = if last { (key.0, WHOLE) } else { key };
        let mut acked = self.inner.acked.lock().unwrap_or_else(|p| p.into_inner());
        // Popped from the queue only once recorded: `pending() == 0` means all is on disk.
        let _pop = PopOnDrop(self, key);
        if key <= *acked {
            return;
        }
        *acked = key;
        let text = if last {
            format!("{}\n", key.0)
        } else {
            format!("{} {}\n", key.0, key.1)
        };
        let tmp = self.inner.acked_path.with_extension("tmp");
        let r =
            std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, &self.inner.acked_path));
        if let Err(e) = r {
            // Not fatal: the batch would be sent again after a restart.
            tracing::warn!(path = %self.inner.acked_path.display(), error = %e, "recording acknowledged segment failed");
            return;
        }
        if last {
            if let Err(e) = self.inner.wal.truncate_before(key.0 + 1) {
                tracing::warn!(error = %e, "deleting acknowledged segments failed");
            }
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
                q.front().map(|b| (b.key, b.last, b.items))
            };
            let Some((key, last, items)) = oldest else {
                return;
            };
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            self.inner.items_dropped.fetch_add(items, Ordering::Relaxed);
            tracing::warn!(kind = self.inner.cfg.kind, url = %self.inner.cfg.url, segment = key.0, max_buffer_bytes = self.inner.cfg.max_buffer_bytes, "buffer full, dropping oldest batch");
            self.ack(key, last);
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        self.inner.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes requests up to the key from the queue when dropped.
struct PopOnDrop<'a>(&'a Forwarder, Key);

impl Drop for PopOnDrop<'_> {
    fn drop(&mut self) {
        let key = self.1;
        self.0.queue().retain(|b| b.key > key);
    }
}

/// A retry wait: uniformly between half of `backoff` and all of it ("equal jitter").
fn jittered(backoff: std::time::Duration) -> std::time::Duration {
    let half = backoff / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// Sends collected samples to one remote_write endpoint through a durable buffer (a
/// [`Forwarder`] speaking remote_write 1.0, in `data_dir/remote_write`). Cheap to clone.
#[derive(Clone)]
pub struct RemoteWriteForwarder {
    fwd: Forwarder,
}

impl RemoteWriteForwarder {
    /// Opens (or creates) the buffer under `data_dir/remote_write` and loads un-acknowledged batches.
    pub fn open(cfg: RemoteWriteConfig, data_dir: &Path) -> Result<Self, Error> {
        cfg.validate()?;
        let fwd = Forwarder::open(
            ForwarderConfig::remote_write(&cfg),
            &data_dir.join("remote_write"),
        )?;
        Ok(Self { fwd })
    }

    /// Durably buffers one request; returns once it is in the WAL. Empty requests are ignored.
    pub async fn enqueue(&self, req: &WriteRequest) -> Result<(), Error> {
        if req.timeseries.is_empty() && req.metadata.is_empty() {
            return Ok(());
        }
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .map_err(|e| Error::Send(format!("snappy: {e}")))?;
        self.fwd
            .enqueue(vec![Request {
                tenant: None,
                body,
                items: req.timeseries.len() as u64,
            }])
            .await
    }

    /// Durably buffers several requests as one batch (all or none), each sent with its own tenant
    /// (`None`: the configured `tenant`); returns once they are in the WAL. Empty requests are
    /// skipped.
    pub async fn enqueue_tenants(
        &self,
        reqs: Vec<(Option<String>, WriteRequest)>,
    ) -> Result<(), Error> {
        let mut out = Vec::with_capacity(reqs.len());
        for (tenant, req) in reqs {
            if req.timeseries.is_empty() && req.metadata.is_empty() {
                continue;
            }
            let body = snap::raw::Encoder::new()
                .compress_vec(&req.encode_to_vec())
                .map_err(|e| Error::Send(format!("snappy: {e}")))?;
            out.push(Request {
                tenant,
                body,
                items: req.timeseries.iter().map(|t| t.samples.len() as u64).sum(),
            });
        }
        self.fwd.enqueue(out).await
    }

    /// Batches buffered and not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.fwd.pending()
    }

    /// Adds the forwarder's own counters (`heimdall_agent_remote_write_*`).
    pub fn add_metrics(&self, out: &mut Families) {
        self.fwd.add_metrics(out)
    }

    /// Sends buffered batches in order, forever (see [`Forwarder::run`]).
    pub async fn run(self) {
        self.fwd.run().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    use super::*;

    #[test]
    fn retry_waits_are_jittered_within_bounds() {
        let b = std::time::Duration::from_millis(1000);
        let waits: Vec<_> = (0..200).map(|_| jittered(b)).collect();
        assert!(waits.iter().all(|w| *w >= b / 2 && *w <= b), "{waits:?}");
        let distinct: std::collections::HashSet<_> = waits.iter().collect();
        assert!(distinct.len() > 100, "not spread: {}", distinct.len());
    }
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
    async fn per_tenant_requests_carry_their_tenant() {
        let rx = Receiver::default();
        let url = start(rx.clone()).await;
        let tmp = tempfile::tempdir().unwrap();
        let fwd = RemoteWriteForwarder::open(cfg(&url), tmp.path()).unwrap();
        let task = tokio::spawn(fwd.clone().run());
        fwd.enqueue_tenants(vec![
            (Some("team-a".into()), req(1.0)),
            (None, req(2.0)),
            (Some("empty".into()), WriteRequest::default()),
        ])
        .await
        .unwrap();
        wait(|| fwd.pending() == 0).await;
        task.abort();
        let got: Vec<(f64, Option<String>)> = rx
            .got
            .lock()
            .unwrap()
            .iter()
            .map(|(r, t, _)| (r.timeseries[0].samples[0].value, t.clone()))
            .collect();
        assert_eq!(
            got,
            vec![(1.0, Some("team-a".into())), (2.0, Some("t1".into()))],
            "own tenant, then the default; empty requests are skipped"
        );
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

    fn part(tenant: &str, body: &[u8], items: u64) -> Request {
        Request {
            tenant: Some(tenant.into()),
            body: body.to_vec(),
            items,
        }
    }

    /// (tenant, body) of accepted requests.
    type Got = Arc<StdMutex<Vec<(Option<String>, Vec<u8>)>>>;

    /// A generic receiver at `/push`: records (tenant, body) of 2xx answers.
    async fn start_raw(script: Vec<u16>) -> (String, Got) {
        let script = Arc::new(StdMutex::new(VecDeque::from(script)));
        let got: Got = Arc::default();
        let g = got.clone();
        let app = axum::Router::new().route(
            "/push",
            post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let (script, got) = (script.clone(), g.clone());
                async move {
                    let status = script.lock().unwrap().pop_front().unwrap_or(204);
                    if status < 300 {
                        let t = headers
                            .get("x-scope-orgid")
                            .map(|v| v.to_str().unwrap().to_string());
                        got.lock().unwrap().push((t, body.to_vec()));
                    }
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        (format!("http://{addr}/push"), got)
    }

    fn generic(url: &str) -> ForwarderConfig {
        ForwarderConfig {
            metric_prefix: "test",
            kind: "test",
            url: url.into(),
            tenant: Some("default".into()),
            bearer_token: None,
            headers: vec![("Content-Type", "application/x-protobuf")],
            timeout: common::config::Duration::from_secs(5),
            min_backoff: common::config::Duration::from_millis(10),
            max_backoff: common::config::Duration::from_millis(20),
            max_buffer_bytes: 1 << 30,
        }
    }

    #[tokio::test]
    async fn batch_parts_are_acknowledged_one_by_one_across_restarts() {
        let tmp = tempfile::tempdir().unwrap();
        // The first request is accepted, then the endpoint fails for a while.
        let (url, got) = start_raw([204].into_iter().chain([503; 1000]).collect()).await;
        {
            let fwd = Forwarder::open(generic(&url), tmp.path()).unwrap();
            let task = tokio::spawn(fwd.clone().run());
            fwd.enqueue(vec![
                part("a", b"1", 2),
                part("b", b"2", 3),
                part("c", b"3", 4),
            ])
            .await
            .unwrap();
            wait(|| fwd.pending() == 2).await;
            assert_eq!(fwd.items_sent(), 2);
            task.abort();
            let _ = task.await;
        }
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("acked")).unwrap(),
            "1 0\n",
            "segment 1, request 0"
        );
        let (url, got2) = start_raw(vec![]).await;
        let fwd = Forwarder::open(generic(&url), tmp.path()).unwrap();
        assert_eq!(
            fwd.pending(),
            2,
            "only the unacknowledged requests are replayed"
        );
        let task = tokio::spawn(fwd.clone().run());
        wait(|| fwd.pending() == 0).await;
        task.abort();
        assert_eq!(
            got.lock().unwrap().clone(),
            vec![(Some("a".to_string()), b"1".to_vec())]
        );
        assert_eq!(
            got2.lock().unwrap().clone(),
            vec![
                (Some("b".to_string()), b"2".to_vec()),
                (Some("c".to_string()), b"3".to_vec())
            ]
        );
        assert_eq!(fwd.items_sent(), 7);
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("acked")).unwrap(),
            "1\n"
        );
    }

    #[tokio::test]
    async fn bare_records_of_older_agents_are_replayed() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let wal = Wal::open(
                &tmp.path().join("wal"),
                WalOptions::default(),
                |_, _| Ok(()),
            )
            .unwrap();
            wal.append(b"bare body".to_vec()).await.unwrap();
            wal.close().unwrap();
        }
        let (url, got) = start_raw(vec![]).await;
        let fwd = Forwarder::open(generic(&url), tmp.path()).unwrap();
        assert_eq!(fwd.pending(), 1);
        let task = tokio::spawn(fwd.clone().run());
        wait(|| fwd.pending() == 0).await;
        task.abort();
        assert_eq!(
            got.lock().unwrap().clone(),
            vec![(Some("default".to_string()), b"bare body".to_vec())],
            "default tenant"
        );
    }

    #[test]
    fn record_round_trip_and_acked_parsing() {
        let rec = encode_record(vec![part("t", b"x", 1)]);
        let parts = decode_record(&rec).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].tenant.as_deref(), Some("t"));
        assert_eq!(parts[0].body, b"x");
        assert!(decode_record(b"HF\x01\xff").is_err());
        assert_eq!(parse_acked("7\n"), Some((7, WHOLE)));
        assert_eq!(parse_acked("7 2\n"), Some((7, 2)));
        assert_eq!(parse_acked("x"), None);
        assert_eq!(parse_acked("1 2 3"), None);
    }
}
