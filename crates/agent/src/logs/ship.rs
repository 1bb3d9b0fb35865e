//! Batching entries into Loki pushes and the tail → queue → commit loop.
//!
//! A batch is cut at `batch_max_bytes` or when its oldest entry waited `batch_max_wait`. It becomes
//! one `PushRequest` per tenant (snappy block-compressed protobuf), all queued in the durable
//! forwarder at once; only then are the read positions written. A crash loses nothing: lines after
//! the saved positions are read again (at most the in-flight batch is sent twice).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use proto::loki::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};

use super::format::Entry;
use super::labels::Source;
use super::positions::{self, Positions};
use super::tailer::Tailer;
use super::Stats;
use crate::forward::{Forwarder, Request};
use crate::Error;

/// Per-entry overhead counted towards the batch size (timestamp, framing).
const ENTRY_OVERHEAD: usize = 16;

/// Entries waiting to be queued, by tenant and label set.
#[derive(Default)]
pub struct Batch {
    streams: BTreeMap<Option<String>, BTreeMap<Arc<str>, Vec<EntryAdapter>>>,
    bytes: usize,
    entries: u64,
    oldest: Option<Instant>,
    /// Label sets with a `level` added, by (label set, level): rendered once per batch.
    with_level: std::collections::HashMap<(Arc<str>, &'static str), Arc<str>>,
}

impl Batch {
    /// Adds an entry of `src` (with its line's level, trace and span id lifted out when
    /// `src.parse_lines`).
    pub fn add(&mut self, src: &Source, e: Entry) {
        let mut labels = src.labels_for(e.stream);
        let mut structured_metadata = Vec::new();
        let level_labels;
        if src.parse_lines {
            let f = super::fields::extract(&e.line);
            if let Some(level) = f.level {
                level_labels = self
                    .with_level
                    .entry((labels.clone(), level))
                    .or_insert_with(|| src.labels_with_level(e.stream, level))
                    .clone();
                labels = &level_labels;
            }
            for (name, value) in [("trace_id", f.trace_id), ("span_id", f.span_id)] {
                if let Some(value) = value {
                    self.bytes += name.len() + value.len();
                    structured_metadata.push(LabelPairAdapter {
                        name: name.into(),
                        value,
                    });
                }
            }
        }
        let by_labels = match self.streams.get_mut(&src.tenant) {
            Some(m) => m,
            None => self.streams.entry(src.tenant.clone()).or_default(),
        };
        let entries = match by_labels.get_mut(labels) {
            Some(v) => v,
            None => by_labels.entry(labels.clone()).or_default(),
        };
        self.bytes += e.line.len() + ENTRY_OVERHEAD;
        self.entries += 1;
        self.oldest.get_or_insert_with(Instant::now);
        entries.push(EntryAdapter {
            timestamp: Some(Timestamp {
                seconds: e.ts_ns.div_euclid(1_000_000_000),
                nanos: e.ts_ns.rem_euclid(1_000_000_000) as i32,
            }),
            line: e.line,
            structured_metadata,
            parsed: Vec::new(),
        });
    }

    /// Bytes of the lines held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries held.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// How long the oldest entry has waited.
    pub fn age(&self) -> Duration {
        self.oldest.map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// One push per tenant: entries of a stream sorted by time (stable, so lines with equal
    /// timestamps keep their file order).
    pub fn into_requests(self) -> Result<Vec<Request>, Error> {
        let mut out = Vec::with_capacity(self.streams.len());
        for (tenant, by_labels) in self.streams {
            let mut items = 0;
            let streams = by_labels
                .into_iter()
                .map(|(labels, mut entries)| {
                    entries.sort_by_key(|e| e.timestamp.map(|t| (t.seconds, t.nanos)));
                    items += entries.len() as u64;
                    StreamAdapter {
                        labels: labels.to_string(),
                        entries,
                        hash: 0,
                    }
                })
                .collect();
            let body = snap::raw::Encoder::new()
                .compress_vec(&PushRequest { streams }.encode_to_vec())
                .map_err(|e| Error::Send(format!("snappy: {e}")))?;
            out.push(Request {
                tenant,
                body,
                items,
            });
        }
        Ok(out)
    }
}

/// Timing and limits of the loop.
#[derive(Clone, Debug)]
pub struct LoopOptions {
    /// Where positions are saved.
    pub positions_file: PathBuf,
    /// Cut a batch at this many bytes.
    pub batch_max_bytes: usize,
    /// Cut a batch when its oldest entry waited this long.
    pub batch_max_wait: Duration,
    /// Pause between polls when nothing was read.
    pub poll_interval: Duration,
    /// Re-evaluate the globs this often.
    pub rescan_interval: Duration,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "log tailer task failed, log tailing stops");
            None
        }
    }
}

/// Tails, batches, queues and commits positions, forever. Abort the task to stop: nothing read
/// but not queued is lost, it is read again from the saved positions.
pub async fn run(mut tailer: Tailer, fwd: Forwarder, opts: LoopOptions, stats: Arc<Stats>) {
    let mut batch = Batch::default();
    let mut next_scan = Instant::now();
    let mut saved: Option<Positions> = None;
    loop {
        if Instant::now() >= next_scan {
            let Some(t) = blocking(move || {
                let mut t = tailer;
                t.scan();
                t
            })
            .await
            else {
                return;
            };
            tailer = t;
            next_scan = Instant::now() + opts.rescan_interval;
        }
        // Backpressure: while the buffer is (nearly) full, the files are the buffer. The margin
        // keeps the next batch from pushing the forwarder over its cap, where it would drop.
        let room = fwd
            .max_buffer_bytes()
            .saturating_sub(2 * opts.batch_max_bytes as u64);
        let full = fwd.buffer_bytes() >= room;
        let mut read = 0;
        if !full {
            let max = opts.batch_max_bytes;
            let Some((t, b, n)) = blocking(move || {
                let (mut t, mut b) = (tailer, batch);
                let n = t.poll(&mut b, max);
                (t, b, n)
            })
            .await
            else {
                return;
            };
            (tailer, batch, read) = (t, b, n);
        }
        if !batch.is_empty()
            && (batch.bytes() >= opts.batch_max_bytes || batch.age() >= opts.batch_max_wait)
        {
            let n = batch.entries();
            let reqs = match std::mem::take(&mut batch).into_requests() {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "encoding log batch failed, dropping it");
                    Vec::new()
                }
            };
            let mut delay = Duration::from_millis(100);
            while let Err(e) = fwd.enqueue(reqs.clone()).await {
                // Positions are not advanced, so nothing is lost while this persists.
                tracing::error!(error = %e, retry_in = ?delay, "buffering log batch failed");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            stats.queued.fetch_add(n, Ordering::Relaxed);
        }
        // Positions may only cover what is queued: save them only with nothing held back.
        if batch.is_empty() {
            let pos = tailer.positions();
            if saved.as_ref() != Some(&pos) {
                let path = opts.positions_file.clone();
                let p = pos.clone();
                match blocking(move || positions::save(&path, &p)).await {
                    Some(Ok(())) => saved = Some(pos),
                    Some(Err(e)) => tracing::warn!(error = %e, "saving log positions failed"),
                    None => return,
                }
            }
        }
        if read == 0 || full {
            let mut wait = opts.poll_interval;
            if !batch.is_empty() {
                wait = wait.min(opts.batch_max_wait.saturating_sub(batch.age()));
            }
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::logs::format::Stream;
    use crate::logs::labels::LabelRules;

    /// (tenant, labels, line, ts_ns) of every entry of `reqs`, in request order.
    pub(crate) fn decode(reqs: &[Request]) -> Vec<(Option<String>, String, String, i64)> {
        let mut out = Vec::new();
        for r in reqs {
            let raw = snap::raw::Decoder::new().decompress_vec(&r.body).unwrap();
            let push = PushRequest::decode(raw.as_slice()).unwrap();
            for s in push.streams {
                for e in s.entries {
                    let t = e.timestamp.unwrap();
                    out.push((
                        r.tenant.clone(),
                        s.labels.clone(),
                        e.line,
                        t.seconds * 1_000_000_000 + t.nanos as i64,
                    ));
                }
            }
        }
        out
    }

    #[test]
    fn one_request_per_tenant_streams_sorted_by_time() {
        let rules = LabelRules {
            node_name: "n".into(),
            default_tenant: Some("d".into()),
            tenant_from_namespace: true,
            ..Default::default()
        };
        let pod = rules.source(std::path::Path::new("/p/ns1_a_u/c/0.log"), true);
        let file = rules.source(std::path::Path::new("/var/log/x.log"), false);
        let mut b = Batch::default();
        let e = |ts, line: &str, stream| Entry {
            ts_ns: ts,
            line: line.into(),
            stream,
        };
        b.add(&pod, e(2_500_000_000, "late", Some(Stream::Stdout)));
        b.add(&pod, e(1_000_000_001, "early", Some(Stream::Stdout)));
        b.add(&pod, e(3, "err", Some(Stream::Stderr)));
        b.add(&file, e(-1, "before epoch", None));
        assert_eq!(b.entries(), 4);
        assert!(b.bytes() >= 22);
        let reqs = b.into_requests().unwrap();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].tenant.as_deref(), Some("d"));
        assert_eq!(reqs[0].items, 1);
        assert_eq!(reqs[1].tenant.as_deref(), Some("ns1"));
        assert_eq!(reqs[1].items, 3);
        let got: Vec<(String, i64)> = decode(&reqs)
            .into_iter()
            .map(|(_, _, l, ts)| (l, ts))
            .collect();
        assert_eq!(
            got,
            [
                ("before epoch".to_string(), -1),
                ("err".to_string(), 3),
                ("early".to_string(), 1_000_000_001),
                ("late".to_string(), 2_500_000_000),
            ]
        );
    }

    #[test]
    fn levels_become_labels_and_ids_structured_metadata() {
        let rules = LabelRules {
            node_name: "n".into(),
            parse_lines: true,
            ..Default::default()
        };
        let pod = rules.source(std::path::Path::new("/p/ns1_a_u/c/0.log"), true);
        let mut b = Batch::default();
        for (ts, line) in [
            (
                1,
                r#"{"level":"ERROR","msg":"a","trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331"}"#,
            ),
            (2, "level=warning msg=b"),
            (3, "no level here"),
            (4, r#"{"level":"error","msg":"c"}"#),
        ] {
            b.add(
                &pod,
                Entry {
                    ts_ns: ts,
                    line: line.into(),
                    stream: Some(Stream::Stdout),
                },
            );
        }
        let reqs = b.into_requests().unwrap();
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&reqs[0].body)
            .unwrap();
        let push = PushRequest::decode(raw.as_slice()).unwrap();
        let by_labels: BTreeMap<&str, Vec<(&str, usize)>> = push
            .streams
            .iter()
            .map(|s| {
                let e = s
                    .entries
                    .iter()
                    .map(|e| (&*e.line, e.structured_metadata.len()));
                (&*s.labels, e.collect())
            })
            .collect();
        let base = r#"{app="a", container="c", job="ns1/c", namespace="ns1", node="n", pod="a", service_name="c", stream="stdout"}"#;
        let lvl = |l: &str| base.replace("namespace=", &format!("level=\"{l}\", namespace="));
        assert_eq!(by_labels.len(), 3, "{by_labels:?}");
        assert_eq!(by_labels[base], [("no level here", 0)]);
        assert_eq!(by_labels[&*lvl("warn")], [("level=warning msg=b", 0)]);
        assert_eq!(
            by_labels[&*lvl("error")]
                .iter()
                .map(|e| e.1)
                .collect::<Vec<_>>(),
            [2, 0]
        );
        let md = &push
            .streams
            .iter()
            .find(|s| s.labels == lvl("error"))
            .unwrap()
            .entries[0]
            .structured_metadata;
        assert_eq!(
            md.iter().map(|m| (&*m.name, &*m.value)).collect::<Vec<_>>(),
            [
                ("trace_id", "0af7651916cd43dd8448eb211c80319c"),
                ("span_id", "b7ad6b7169203331")
            ]
        );
    }
}
