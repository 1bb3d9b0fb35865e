//! The metrics data model shared by ingest, the TSDB, PromQL and the API.

use std::sync::Arc;

use common::{Labels, Matcher};

/// One float sample. Timestamps are milliseconds since the epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Timestamp, ms.
    pub t: i64,
    /// Value (may be the stale marker, see [`STALE_NAN_BITS`]).
    pub v: f64,
}

/// Bit pattern of Prometheus' staleness marker (a specific NaN).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is the staleness marker (exact bits, not any NaN).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

pub use common::gofmt::{format_f as format_float, format_json_value as format_value};

/// A run of consecutive buckets in a native histogram: the first span's offset is absolute, later
/// ones are gaps after the previous span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Offset (absolute for the first span, relative after).
    pub offset: i32,
    /// Number of consecutive buckets.
    pub length: u32,
}

/// Counter reset hint of a native histogram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResetHint {
    /// Unknown.
    #[default]
    Unknown,
    /// A counter reset happened.
    Yes,
    /// No counter reset happened.
    No,
    /// A gauge histogram (no counter semantics).
    Gauge,
}

/// A native histogram in float form (integer histograms are converted on ingest: buckets are
/// absolute counts here, not deltas).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Resolution: −4..8 exponential (base 2^(2^−schema)); −53 custom bounds.
    pub schema: i32,
    /// Width of the zero bucket `[−zt, zt]`.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: f64,
    /// Total observations.
    pub count: f64,
    /// Sum of observations.
    pub sum: f64,
    /// Spans of positive buckets.
    pub positive_spans: Vec<Span>,
    /// Absolute counts of positive buckets.
    pub positive_buckets: Vec<f64>,
    /// Spans of negative buckets.
    pub negative_spans: Vec<Span>,
    /// Absolute counts of negative buckets.
    pub negative_buckets: Vec<f64>,
    /// Upper bounds of custom buckets (schema −53).
    pub custom_values: Vec<f64>,
    /// Counter reset hint.
    pub reset_hint: ResetHint,
}

/// A timestamped native histogram.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSample {
    /// Timestamp, ms.
    pub t: i64,
    /// The histogram.
    pub h: Arc<Histogram>,
}

/// An exemplar attached to a series.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    /// Exemplar labels (e.g. `trace_id`).
    pub labels: Labels,
    /// Observed value.
    pub value: f64,
    /// Timestamp, ms.
    pub t: i64,
}

/// Prometheus metric types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// Unknown / untyped.
    #[default]
    Unknown,
    /// Counter.
    Counter,
    /// Gauge.
    Gauge,
    /// Histogram.
    Histogram,
    /// Gauge histogram.
    GaugeHistogram,
    /// Summary.
    Summary,
    /// Info.
    Info,
    /// State set.
    StateSet,
}

impl MetricType {
    /// The lowercase name the metadata API returns.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Unknown => "unknown",
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
        }
    }
}

/// Metadata of a metric family.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Metadata {
    /// Type.
    pub metric_type: MetricType,
    /// HELP text.
    pub help: String,
    /// Unit.
    pub unit: String,
}

/// Everything one write request carries for one series.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeriesWrite {
    /// Full, sorted label set including `__name__`.
    pub labels: Labels,
    /// Float samples in time order.
    pub samples: Vec<Sample>,
    /// Native histogram samples in time order.
    pub histograms: Vec<HistogramSample>,
    /// Exemplars.
    pub exemplars: Vec<Exemplar>,
}

/// A decoded, validated write request (remote_write 1.0/2.0 or OTLP), ready for the TSDB.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteBatch {
    /// Series and their data.
    pub series: Vec<SeriesWrite>,
    /// Metric family metadata, keyed by family name.
    pub metadata: Vec<(String, Metadata)>,
}

impl WriteBatch {
    /// Number of float samples.
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }
    /// Number of histogram samples.
    pub fn histogram_count(&self) -> usize {
        self.series.iter().map(|s| s.histograms.len()).sum()
    }
    /// Number of exemplars.
    pub fn exemplar_count(&self) -> usize {
        self.series.iter().map(|s| s.exemplars.len()).sum()
    }
}

/// A write of float samples only, borrowing label names and values from the request body: the
/// allocation-free fast path of remote_write 1.0 ([`crate::ingest::rw_wire`]). Each series' labels are
/// already validated and sorted exactly as [`SeriesWrite::labels`] would be; [`RawWrite::to_batch`]
/// gives the equivalent [`WriteBatch`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawWrite<'a> {
    /// One entry per series, in request order.
    pub series: Vec<RawSeries>,
    /// Label pairs of all series, back to back.
    pub labels: Vec<(&'a str, &'a str)>,
    /// Samples of all series, back to back (each series' in time order).
    pub samples: Vec<Sample>,
}

/// Where one series of a [`RawWrite`] lies in its flat vectors (`[start, end)` ranges).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawSeries {
    /// Range in [`RawWrite::labels`].
    pub labels: (u32, u32),
    /// Range in [`RawWrite::samples`].
    pub samples: (u32, u32),
}

impl<'a> RawWrite<'a> {
    /// Labels of series `i`.
    pub fn series_labels(&self, i: usize) -> &[(&'a str, &'a str)] {
        let (a, b) = self.series[i].labels;
        &self.labels[a as usize..b as usize]
    }
    /// Samples of series `i`.
    pub fn series_samples(&self, i: usize) -> &[Sample] {
        let (a, b) = self.series[i].samples;
        &self.samples[a as usize..b as usize]
    }
    /// Number of float samples.
    pub fn sample_count(&self) -> usize {
        self.samples.len()
    }
    /// The owned equivalent.
    pub fn to_batch(&self) -> WriteBatch {
        WriteBatch {
            series: (0..self.series.len())
                .map(|i| SeriesWrite {
                    labels: raw_labels(self.series_labels(i)),
                    samples: self.series_samples(i).to_vec(),
                    histograms: Vec::new(),
                    exemplars: Vec::new(),
                })
                .collect(),
            metadata: Vec::new(),
        }
    }
}

/// Owned labels of sorted borrowed pairs.
pub fn raw_labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_sorted(
        pairs
            .iter()
            .map(|&(n, v)| common::Label::new(n, v))
            .collect(),
    )
}

/// What a write actually stored (remote_write 2.0 reports these in response headers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Float samples written.
    pub samples: u64,
    /// Histogram samples written.
    pub histograms: u64,
    /// Exemplars written.
    pub exemplars: u64,
}

/// One series with its data inside a queried time range, samples in time order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeriesData {
    /// Label set (with `__tenant_id__` added on federated reads).
    pub labels: Labels,
    /// Float samples (stale markers included; PromQL handles them).
    pub samples: Vec<Sample>,
    /// Native histogram samples.
    pub histograms: Vec<HistogramSample>,
}

/// Where PromQL and the API read series from: bound to one tenant set by the caller.
#[async_trait::async_trait]
pub trait SeriesSource: Send + Sync {
    /// Every series matching all `matchers` with data in `[mint, maxt]` (ms, both inclusive),
    /// sorted by labels. Limits (max series/samples per query) are enforced here.
    async fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesData>, crate::Error>;
}
