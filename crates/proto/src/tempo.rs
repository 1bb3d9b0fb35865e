//! Tempo's trace-by-id response types (package `tempopb`), written from the documented field
//! numbers. `Trace` is wire-identical to OTLP `TracesData` (field 1: `ResourceSpans`).

use crate::otlp::tonic::trace::v1::ResourceSpans;

/// `tempopb.Trace`: the body of `/api/traces/<id>` with `Accept: application/protobuf`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Trace {
    /// The spans, grouped by resource and scope as in OTLP.
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

/// `tempopb.TraceByIDMetrics`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct TraceByIdMetrics {
    /// Bytes read to answer.
    #[prost(uint64, tag = "1")]
    pub inspected_bytes: u64,
}

/// `tempopb.TraceByIDResponse`: the body of `/api/v2/traces/<id>` with protobuf.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TraceByIdResponse {
    /// The trace.
    #[prost(message, optional, tag = "1")]
    pub trace: Option<Trace>,
    /// Query metrics.
    #[prost(message, optional, tag = "2")]
    pub metrics: Option<TraceByIdMetrics>,
    /// `PartialStatus`: 0 complete, 1 partial.
    #[prost(int32, tag = "3")]
    pub status: i32,
    /// Why the trace is partial, if it is.
    #[prost(string, tag = "4")]
    pub message: String,
}
