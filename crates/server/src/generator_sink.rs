//! Connects the traces metrics generator to the metrics store: generated samples are written into
//! the same tenant's metrics, so PromQL over span metrics and service graphs works and Grafana's
//! exemplar links find their traces.

use common::{Label, Labels, TenantId};
use metrics::tsdb::MetricsStore;
use metrics::{Exemplar, Sample, SeriesWrite, WriteBatch};
use traces::generator::{GenSample, SampleSink};
use tracing::warn;

/// Writes generated samples into a [`MetricsStore`], in the order the generator produced them
/// (one writer task; the span writes are already durable, metrics follow asynchronously).
pub struct MetricsSink {
    tx: tokio::sync::mpsc::UnboundedSender<(TenantId, WriteBatch)>,
}

impl MetricsSink {
    /// Starts the writer task (needs a tokio runtime).
    pub fn start(store: MetricsStore) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(TenantId, WriteBatch)>();
        tokio::spawn(async move {
            while let Some((tenant, batch)) = rx.recv().await {
                if let Err(e) = store.write(&tenant, batch).await {
                    warn!(tenant = %tenant, error = %e, "writing generated span metrics failed");
                }
            }
        });
        Self { tx }
    }
}

/// The write batch for generated samples (empty label values dropped, as Prometheus does).
pub fn to_batch(samples: Vec<GenSample>) -> WriteBatch {
    let series = samples
        .into_iter()
        .map(|s| {
            let labels: Vec<Label> = s
                .labels
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| Label::new(k, v))
                .collect();
            SeriesWrite {
                labels: Labels::from_sorted(labels),
                samples: vec![Sample {
                    t: s.t_ms,
                    v: s.value,
                }],
                histograms: Vec::new(),
                exemplars: s
                    .exemplar
                    .map(|(trace, v)| Exemplar {
                        labels: Labels::from_pairs([("traceID", trace)]),
                        value: v,
                        t: s.t_ms,
                    })
                    .into_iter()
                    .collect(),
            }
        })
        .collect();
    WriteBatch {
        series,
        metadata: Vec::new(),
    }
}

impl SampleSink for MetricsSink {
    fn write(&self, tenant: &TenantId, samples: Vec<GenSample>) {
        let _ = self.tx.send((tenant.clone(), to_batch(samples)));
    }
}
