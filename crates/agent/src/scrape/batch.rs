//! Gathering the output of many scrape loops into remote_write requests: one request per tenant
//! per batch (split past `batch_max_series`), buffered as one durable forwarder batch.

use proto::prometheus::{Label, MetricMetadata, TimeSeries, WriteRequest};
use tokio::sync::mpsc;

use crate::RemoteWriteForwarder;

/// The output of one scrape (or stop) of one target.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// `None` is the agent's default tenant.
    pub tenant: Option<String>,
    /// Samples, labels sorted.
    pub series: Vec<TimeSeries>,
    /// Family metadata.
    pub metadata: Vec<MetricMetadata>,
}

/// Groups `batches` by tenant (in order of first appearance), adds `external` labels where a series
/// lacks them, and splits each tenant's series into requests of at most `max_series` (metadata
/// rides with the tenant's first request).
pub fn group(
    batches: Vec<Batch>,
    max_series: usize,
    external: &[(String, String)],
) -> Vec<(Option<String>, WriteRequest)> {
    let mut tenants: Vec<(Option<String>, Vec<TimeSeries>, Vec<MetricMetadata>)> = Vec::new();
    for b in batches {
        let i = match tenants.iter().position(|(t, _, _)| *t == b.tenant) {
            Some(i) => i,
            None => {
                tenants.push((b.tenant.clone(), Vec::new(), Vec::new()));
                tenants.len() - 1
            }
        };
        tenants[i].1.extend(b.series);
        tenants[i].2.extend(b.metadata);
    }
    let max = max_series.max(1);
    let mut out = Vec::new();
    for (tenant, mut series, mut metadata) in tenants {
        if !external.is_empty() {
            for s in &mut series {
                add_external(&mut s.labels, external);
            }
        }
        if series.is_empty() {
            out.push((
                tenant,
                WriteRequest {
                    timeseries: Vec::new(),
                    metadata,
                },
            ));
            continue;
        }
        while !series.is_empty() {
            let rest = series.split_off(series.len().min(max));
            out.push((
                tenant.clone(),
                WriteRequest {
                    timeseries: std::mem::replace(&mut series, rest),
                    metadata: std::mem::take(&mut metadata),
                },
            ));
        }
    }
    out
}

fn add_external(labels: &mut Vec<Label>, external: &[(String, String)]) {
    let before = labels.len();
    for (n, v) in external {
        if !labels[..before].iter().any(|l| &l.name == n) {
            labels.push(Label {
                name: n.clone(),
                value: v.clone(),
            });
        }
    }
    if labels.len() > before {
        labels.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

/// Receives scrape output and buffers it in `fwd`: a batch closes `max_wait` after its first
/// item or at `8 × max_series` series. Returns when every sender is gone.
pub async fn run(
    mut rx: mpsc::Receiver<Batch>,
    fwd: RemoteWriteForwarder,
    max_wait: std::time::Duration,
    max_series: usize,
    external: Vec<(String, String)>,
    failures: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    let cap = max_series.saturating_mul(8).max(1);
    loop {
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut n = first.series.len();
        let mut pending = vec![first];
        let deadline = tokio::time::Instant::now() + max_wait;
        let mut closed = false;
        while n < cap {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(b)) => {
                    n += b.series.len();
                    pending.push(b);
                }
                Ok(None) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let reqs = group(pending, max_series, &external);
        if let Err(e) = fwd.enqueue_tenants(reqs).await {
            failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(error = %e, series = n, "buffering scraped samples failed");
        }
        if closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::prometheus::Sample;

    fn series(name: &str, extra: &[(&str, &str)]) -> TimeSeries {
        let mut labels = vec![Label {
            name: "__name__".into(),
            value: name.into(),
        }];
        for (n, v) in extra {
            labels.push(Label {
                name: n.to_string(),
                value: v.to_string(),
            });
        }
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        TimeSeries {
            labels,
            samples: vec![Sample {
                value: 1.0,
                timestamp: 1,
            }],
            ..Default::default()
        }
    }

    fn batch(tenant: Option<&str>, names: &[&str]) -> Batch {
        Batch {
            tenant: tenant.map(String::from),
            series: names.iter().map(|n| series(n, &[])).collect(),
            metadata: vec![MetricMetadata {
                metric_family_name: names.first().copied().unwrap_or("none").into(),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn one_request_per_tenant_split_by_size() {
        let out = group(
            vec![
                batch(Some("a"), &["x", "y"]),
                batch(None, &["z"]),
                batch(Some("a"), &["w"]),
                batch(Some("b"), &[]),
            ],
            2,
            &[],
        );
        let shape: Vec<(Option<&str>, usize, usize)> = out
            .iter()
            .map(|(t, r)| (t.as_deref(), r.timeseries.len(), r.metadata.len()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (Some("a"), 2, 2),
                (Some("a"), 1, 0),
                (None, 1, 1),
                (Some("b"), 0, 1)
            ]
        );
    }

    #[test]
    fn external_labels_fill_gaps_only_and_stay_sorted() {
        let mut b = batch(None, &[]);
        b.series = vec![
            series("m", &[("cluster", "own"), ("z", "1")]),
            series("n", &[]),
        ];
        let out = group(
            vec![b],
            10,
            &[
                ("cluster".into(), "ext".into()),
                ("region".into(), "eu".into()),
            ],
        );
        let labels = |i: usize| -> Vec<(String, String)> {
            out[0].1.timeseries[i]
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect()
        };
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            labels(0),
            vec![
                s("__name__", "m"),
                s("cluster", "own"),
                s("region", "eu"),
                s("z", "1")
            ]
        );
        assert_eq!(
            labels(1),
            vec![s("__name__", "n"), s("cluster", "ext"), s("region", "eu")]
        );
    }
}
