//! Prometheus remote_write 2.0 types, protobuf package `io.prometheus.write.v2`. Strings are
//! interned in `Request::symbols` (index 0 is always `""`) and referenced by index. Fields 1–3 of
//! `Request` and 6 of `TimeSeries` are reserved by the spec.

/// A remote_write 2.0 request body (before Snappy compression).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    /// Interned strings; `symbols[0]` must be `""`.
    #[prost(string, repeated, tag = "4")]
    pub symbols: Vec<String>,
    /// Series.
    #[prost(message, repeated, tag = "5")]
    pub timeseries: Vec<TimeSeries>,
}

/// One series.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// `(name_ref, value_ref)` pairs into `symbols`, sorted by name.
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    /// Float samples in time order (never together with `histograms`).
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Native histogram samples in time order.
    #[prost(message, repeated, tag = "3")]
    pub histograms: Vec<Histogram>,
    /// Exemplars.
    #[prost(message, repeated, tag = "4")]
    pub exemplars: Vec<Exemplar>,
    /// Metadata of the series' metric family.
    #[prost(message, optional, tag = "5")]
    pub metadata: Option<Metadata>,
}

/// A float sample.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    /// Value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Timestamp, ms.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
    /// Start (created) timestamp of the counter, ms; 0 = unset.
    #[prost(int64, tag = "3")]
    pub start_timestamp: i64,
}

/// An exemplar (must carry a timestamp in 2.0).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    /// `(name_ref, value_ref)` pairs into `symbols`.
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    /// Observed value.
    #[prost(double, tag = "2")]
    pub value: f64,
    /// Timestamp, ms.
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// Per-series metric family metadata.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Metadata {
    /// Family type.
    #[prost(enumeration = "metadata::MetricType", tag = "1")]
    pub r#type: i32,
    /// Reference of the HELP text in `symbols`.
    #[prost(uint32, tag = "3")]
    pub help_ref: u32,
    /// Reference of the unit in `symbols`.
    #[prost(uint32, tag = "4")]
    pub unit_ref: u32,
}

/// Enums of [`Metadata`].
pub mod metadata {
    /// Metric family type.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum MetricType {
        /// Unspecified.
        Unspecified = 0,
        /// Counter.
        Counter = 1,
        /// Gauge.
        Gauge = 2,
        /// Histogram.
        Histogram = 3,
        /// Gauge histogram.
        Gaugehistogram = 4,
        /// Summary.
        Summary = 5,
        /// Info.
        Info = 6,
        /// State set.
        Stateset = 7,
    }
}

/// A native histogram sample; the same fields 1–16 as remote_write 1.0 plus a start timestamp.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    /// Total observation count (integer or float form).
    #[prost(oneof = "histogram::Count", tags = "1, 2")]
    pub count: Option<histogram::Count>,
    /// Sum of observations.
    #[prost(double, tag = "3")]
    pub sum: f64,
    /// Resolution: −4..8 exponential, −53 custom bounds.
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    /// Width of the zero bucket.
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    /// Observations in the zero bucket (integer or float form).
    #[prost(oneof = "histogram::ZeroCount", tags = "6, 7")]
    pub zero_count: Option<histogram::ZeroCount>,
    /// Spans of negative buckets.
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<BucketSpan>,
    /// Delta-encoded counts of negative buckets (integer histograms).
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    /// Absolute counts of negative buckets (float histograms).
    #[prost(double, repeated, tag = "10")]
    pub negative_counts: Vec<f64>,
    /// Spans of positive buckets.
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    /// Delta-encoded counts of positive buckets (integer histograms).
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    /// Absolute counts of positive buckets (float histograms).
    #[prost(double, repeated, tag = "13")]
    pub positive_counts: Vec<f64>,
    /// Counter reset hint.
    #[prost(enumeration = "histogram::ResetHint", tag = "14")]
    pub reset_hint: i32,
    /// Timestamp, ms.
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
    /// Upper bounds of custom buckets (schema −53).
    #[prost(double, repeated, tag = "16")]
    pub custom_values: Vec<f64>,
    /// Start (created) timestamp, ms; 0 = unset.
    #[prost(int64, tag = "17")]
    pub start_timestamp: i64,
}

/// Oneofs and enums of [`Histogram`]: on the wire they are 1.0's (same tags and values).
pub mod histogram {
    pub use crate::prometheus::histogram::{Count, ResetHint, ZeroCount};
}

/// A run of consecutive buckets (the same message as 1.0's).
pub use crate::prometheus::BucketSpan;

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn v2_round_trip_and_field_numbers() {
        let req = Request {
            symbols: vec!["".into(), "__name__".into(), "up".into()],
            timeseries: vec![TimeSeries {
                labels_refs: vec![1, 2],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 5,
                    start_timestamp: 1,
                }],
                ..Default::default()
            }],
        };
        let bytes = req.encode_to_vec();
        // symbols = field 4, length-delimited => tag byte 0x22.
        assert_eq!(bytes[0], 0x22);
        assert_eq!(Request::decode(bytes.as_slice()).unwrap(), req);
    }
}
