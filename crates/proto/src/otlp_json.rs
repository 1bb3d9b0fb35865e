//! OTLP/JSON decoding of metrics and logs export requests into the `opentelemetry-proto` types.
//!
//! Why not the crate's own serde support: its `flatten`ed oneofs (`Metric.data`,
//! `NumberDataPoint.value`, `AnyValue.value`) turn *any* error inside them into `None`, so a
//! metric whose `sum` holds `"NaN"` or whose temporality is written as an enum name silently
//! disappears, and `"asDouble": "NaN"` silently becomes 0. It also accepts only JSON numbers for
//! doubles and needs `values` in `arrayValue`. The OTLP/JSON rules implemented here instead:
//! lowerCamelCase keys, unknown keys ignored, `null` means default, 64-bit integers as strings or
//! numbers, doubles as numbers or strings (`"NaN"`, `"Infinity"`, `"-Infinity"`, decimal), enums as
//! integers (or their proto names, which protojson also accepts), `traceId`/`spanId` as hex,
//! `bytesValue` as base64.

use serde::de::{self, Deserializer};
use serde::Deserialize;

use crate::otlp::tonic::collector::logs::v1::ExportLogsServiceRequest;
use crate::otlp::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use crate::otlp::tonic::collector::trace::v1::ExportTraceServiceRequest;
use crate::otlp::tonic::common::v1 as oc;
use crate::otlp::tonic::logs::v1 as ol;
use crate::otlp::tonic::metrics::v1 as om;
use crate::otlp::tonic::resource::v1 as or;
use crate::otlp::tonic::trace::v1 as ot;

/// Parses an OTLP/JSON `ExportMetricsServiceRequest`.
pub fn decode_metrics_request(
    body: &[u8],
) -> Result<ExportMetricsServiceRequest, serde_json::Error> {
    let r: JRequest = serde_json::from_slice(body)?;
    Ok(ExportMetricsServiceRequest {
        resource_metrics: r.resource_metrics.into_iter().map(Into::into).collect(),
    })
}

/// Parses an OTLP/JSON `ExportLogsServiceRequest`.
pub fn decode_logs_request(body: &[u8]) -> Result<ExportLogsServiceRequest, serde_json::Error> {
    let r: JLogsRequest = serde_json::from_slice(body)?;
    Ok(ExportLogsServiceRequest {
        resource_logs: r.resource_logs.into_iter().map(Into::into).collect(),
    })
}

/// Parses an OTLP/JSON `ExportTraceServiceRequest` (hex ids; enums as integers or names).
pub fn decode_traces_request(body: &[u8]) -> Result<ExportTraceServiceRequest, serde_json::Error> {
    let r: JTracesRequest = serde_json::from_slice(body)?;
    Ok(ExportTraceServiceRequest {
        resource_spans: r.resource_spans.into_iter().map(Into::into).collect(),
    })
}

// ---------------------------------------------------------------------------------------------
// Scalars.

/// A JSON number or string.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    U(u64),
    I(i64),
    F(f64),
    S(String),
}

fn parse_f64(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => s.trim().parse().ok().filter(|f: &f64| f.is_finite()),
    }
}

fn to_f64<E: de::Error>(v: NumOrStr) -> Result<f64, E> {
    match v {
        NumOrStr::U(u) => Ok(u as f64),
        NumOrStr::I(i) => Ok(i as f64),
        NumOrStr::F(f) => Ok(f),
        NumOrStr::S(s) => parse_f64(&s).ok_or_else(|| E::custom(format!("invalid double {s:?}"))),
    }
}

fn to_u64<E: de::Error>(v: NumOrStr) -> Result<u64, E> {
    match v {
        NumOrStr::U(u) => Ok(u),
        NumOrStr::I(i) => u64::try_from(i)
            .map_err(|_| E::custom(format!("negative value {i} for an unsigned field"))),
        NumOrStr::F(f) if f.fract() == 0.0 && (0.0..1.8446744073709552e19).contains(&f) => {
            Ok(f as u64)
        }
        NumOrStr::F(f) => Err(E::custom(format!("{f} is not an unsigned integer"))),
        NumOrStr::S(s) => s
            .trim()
            .parse()
            .map_err(|_| E::custom(format!("invalid unsigned integer {s:?}"))),
    }
}

fn to_i64<E: de::Error>(v: NumOrStr) -> Result<i64, E> {
    match v {
        NumOrStr::U(u) => {
            i64::try_from(u).map_err(|_| E::custom(format!("{u} is out of range for int64")))
        }
        NumOrStr::I(i) => Ok(i),
        NumOrStr::F(f) if f.fract() == 0.0 && (-9.2e18..9.2e18).contains(&f) => Ok(f as i64),
        NumOrStr::F(f) => Err(E::custom(format!("{f} is not an integer"))),
        NumOrStr::S(s) => s
            .trim()
            .parse()
            .map_err(|_| E::custom(format!("invalid integer {s:?}"))),
    }
}

fn f64_<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Option::<NumOrStr>::deserialize(d)?.map_or(Ok(0.0), to_f64)
}

fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Option::<NumOrStr>::deserialize(d)?.map(to_f64).transpose()
}

fn u64_<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Option::<NumOrStr>::deserialize(d)?.map_or(Ok(0), to_u64)
}

fn u32_<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u64_(d)?;
    u32::try_from(v).map_err(|_| de::Error::custom(format!("{v} is out of range for uint32")))
}

fn i32_<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    let v = Option::<NumOrStr>::deserialize(d)?.map_or(Ok(0), to_i64)?;
    i32::try_from(v).map_err(|_| de::Error::custom(format!("{v} is out of range for int32")))
}

fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<NumOrStr>::deserialize(d)?.map(to_i64).transpose()
}

fn vec_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    Option::<Vec<NumOrStr>>::deserialize(d)?
        .unwrap_or_default()
        .into_iter()
        .map(to_u64)
        .collect()
}

fn vec_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    Option::<Vec<NumOrStr>>::deserialize(d)?
        .unwrap_or_default()
        .into_iter()
        .map(to_f64)
        .collect()
}

/// `null` or absent means the default, as in proto3 JSON.
fn nd<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    nd(d)
}

fn hex_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s: String = nd(d)?;
    hex::decode(&s).map_err(|e| de::Error::custom(format!("invalid hex id {s:?}: {e}")))
}

fn temporality<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    proto_enum(
        d,
        "AGGREGATION_TEMPORALITY_",
        "aggregation temporality",
        |s| om::AggregationTemporality::from_str_name(s).map(|t| t as i32),
    )
}

/// An OTLP enum written as its integer or (as protojson also accepts) its proto name starting
/// with `prefix`; `by_name` maps a name to the value.
fn proto_enum<'de, D: Deserializer<'de>>(
    d: D,
    prefix: &str,
    what: &str,
    by_name: impl Fn(&str) -> Option<i32>,
) -> Result<i32, D::Error> {
    match Option::<NumOrStr>::deserialize(d)? {
        None => Ok(0),
        Some(NumOrStr::S(s)) if s.starts_with(prefix) => {
            by_name(&s).ok_or_else(|| de::Error::custom(format!("unknown {what} {s:?}")))
        }
        Some(v) => {
            let v = to_i64(v)?;
            i32::try_from(v)
                .map_err(|_| de::Error::custom(format!("{v} is out of range for an enum")))
        }
    }
}

fn severity<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    proto_enum(d, "SEVERITY_NUMBER_", "severity number", |s| {
        ol::SeverityNumber::from_str_name(s).map(|t| t as i32)
    })
}

fn span_kind<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    proto_enum(d, "SPAN_KIND_", "span kind", |s| {
        ot::span::SpanKind::from_str_name(s).map(|t| t as i32)
    })
}

fn status_code<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    proto_enum(d, "STATUS_CODE_", "status code", |s| {
        ot::status::StatusCode::from_str_name(s).map(|t| t as i32)
    })
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let b = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(b.len() * 3 / 4);
    for chunk in b.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Messages.

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JRequest {
    #[serde(deserialize_with = "nd")]
    resource_metrics: Vec<JResourceMetrics>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JResourceMetrics {
    #[serde(deserialize_with = "nd")]
    resource: Option<JResource>,
    #[serde(deserialize_with = "nd")]
    scope_metrics: Vec<JScopeMetrics>,
    #[serde(deserialize_with = "string")]
    schema_url: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JResource {
    #[serde(deserialize_with = "nd")]
    attributes: Vec<JKeyValue>,
    #[serde(deserialize_with = "u32_")]
    dropped_attributes_count: u32,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JScopeMetrics {
    #[serde(deserialize_with = "nd")]
    scope: Option<JScope>,
    #[serde(deserialize_with = "nd")]
    metrics: Vec<JMetric>,
    #[serde(deserialize_with = "string")]
    schema_url: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JScope {
    #[serde(deserialize_with = "string")]
    name: String,
    #[serde(deserialize_with = "string")]
    version: String,
    #[serde(deserialize_with = "nd")]
    attributes: Vec<JKeyValue>,
    #[serde(deserialize_with = "u32_")]
    dropped_attributes_count: u32,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JKeyValue {
    #[serde(deserialize_with = "string")]
    key: String,
    #[serde(deserialize_with = "nd")]
    value: Option<JAnyValue>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JAnyValue {
    #[serde(deserialize_with = "nd")]
    string_value: Option<String>,
    #[serde(deserialize_with = "nd")]
    bool_value: Option<bool>,
    #[serde(deserialize_with = "opt_i64")]
    int_value: Option<i64>,
    #[serde(deserialize_with = "opt_f64")]
    double_value: Option<f64>,
    #[serde(deserialize_with = "nd")]
    array_value: Option<JValues<JAnyValue>>,
    #[serde(deserialize_with = "nd")]
    kvlist_value: Option<JValues<JKeyValue>>,
    #[serde(deserialize_with = "nd")]
    bytes_value: Option<String>,
}

#[derive(Deserialize)]
#[serde(
    default,
    rename_all = "camelCase",
    bound(deserialize = "T: Deserialize<'de>")
)]
struct JValues<T> {
    #[serde(deserialize_with = "nd")]
    values: Vec<T>,
}

impl<T> Default for JValues<T> {
    fn default() -> Self {
        Self { values: Vec::new() }
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JMetric {
    #[serde(deserialize_with = "string")]
    name: String,
    #[serde(deserialize_with = "string")]
    description: String,
    #[serde(deserialize_with = "string")]
    unit: String,
    #[serde(deserialize_with = "nd")]
    metadata: Vec<JKeyValue>,
    #[serde(deserialize_with = "nd")]
    gauge: Option<JPoints<JNumberPoint>>,
    #[serde(deserialize_with = "nd")]
    sum: Option<JSum>,
    #[serde(deserialize_with = "nd")]
    histogram: Option<JPoints<JHistogramPoint>>,
    #[serde(deserialize_with = "nd")]
    exponential_histogram: Option<JPoints<JExpHistogramPoint>>,
    #[serde(deserialize_with = "nd")]
    summary: Option<JPoints<JSummaryPoint>>,
}

#[derive(Deserialize)]
#[serde(
    default,
    rename_all = "camelCase",
    bound(deserialize = "P: Deserialize<'de>")
)]
struct JPoints<P> {
    #[serde(deserialize_with = "nd")]
    data_points: Vec<P>,
    #[serde(deserialize_with = "temporality")]
    aggregation_temporality: i32,
}

impl<P> Default for JPoints<P> {
    fn default() -> Self {
        Self {
            data_points: Vec::new(),
            aggregation_temporality: 0,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JSum {
    #[serde(deserialize_with = "nd")]
    data_points: Vec<JNumberPoint>,
    #[serde(deserialize_with = "temporality")]
    aggregation_temporality: i32,
    #[serde(deserialize_with = "nd")]
    is_monotonic: bool,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JExemplar {
    #[serde(deserialize_with = "nd")]
    filtered_attributes: Vec<JKeyValue>,
    #[serde(deserialize_with = "u64_")]
    time_unix_nano: u64,
    #[serde(deserialize_with = "opt_f64")]
    as_double: Option<f64>,
    #[serde(deserialize_with = "opt_i64")]
    as_int: Option<i64>,
    #[serde(deserialize_with = "hex_bytes")]
    span_id: Vec<u8>,
    #[serde(deserialize_with = "hex_bytes")]
    trace_id: Vec<u8>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JNumberPoint {
    #[serde(deserialize_with = "nd")]
    attributes: Vec<JKeyValue>,
    #[serde(deserialize_with = "u64_")]
    start_time_unix_nano: u64,
    #[serde(deserialize_with = "u64_")]
    time_unix_nano: u64,
    #[serde(deserialize_with = "opt_f64")]
    as_double: Option<f64>,
    #[serde(deserialize_with = "opt_i64")]
    as_int: Option<i64>,
    #[serde(deserialize_with = "nd")]
    exemplars: Vec<JExemplar>,
    #[serde(deserialize_with = "u32_")]
    flags: u32,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JHistogramPoint {
    #[serde(deserialize_with = "nd")]
    attributes: Vec<JKeyValue>,
    #[serde(deserialize_with = "u64_")]
    start_time_unix_nano: u64,
    #[serde(deserialize_with = "u64_")]
    time_unix_nano: u64,
    #[serde(deserialize_with = "u64_")]
    count: u64,
    #[serde(deserialize_with = "opt_f64")]
    sum: Option<f64>,
    #[serde(deserialize_with = "vec_u64")]
    bucket_counts: Vec<u64>,
    #[serde(deserialize_with = "vec_f64")]
    explicit_bounds: Vec<f64>,
    #[serde(deserialize_with = "nd")]
    exemplars: Vec<JExemplar>,
    #[serde(deserialize_with = "u32_")]
    flags: u32,
    #[serde(deserialize_with = "opt_f64")]
    min: Option<f64>,
    #[serde(deserialize_with = "opt_f64")]
    max: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JBuckets {
    #[serde(deserialize_with = "i32_")]
    offset: i32,
    #[serde(deserialize_with = "vec_u64")]
    bucket_counts: Vec<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JExpHistogramPoint {
    #[serde(deserialize_with = "nd")]
    attributes: Vec<JKeyValue>,
    #[serde(deserialize_with = "u64_")]
    start_time_unix_nano: u64,
    #[serde(deserialize_with = "u64_")]
    time_unix_nano: u64,
    #[serde(deserialize_with = "u64_")]
    count: u64,
    #[serde(deserialize_with = "opt_f64")]
    sum: Option<f64>,
    #[serde(deserialize_with = "i32_")]
    scale: i32,
    #[serde(deserialize_with = "u64_")]
    zero_count: u64,
    #[serde(deserialize_with = "nd")]
    positive: Option<JBuckets>,
    #[serde(deserialize_with = "nd")]
    negative: Option<JBuckets>,
    #[serde(deserialize_with = "u32_")]
    flags: u32,
    #[serde(deserialize_with = "nd")]
    exemplars: Vec<JExemplar>,
    #[serde(deserialize_with = "opt_f64")]
    min: Option<f64>,
    #[serde(deserialize_with = "opt_f64")]
    max: Option<f64>,
    #[serde(deserialize_with = "f64_")]
    zero_threshold: f64,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JQuantile {
    #[serde(deserialize_with = "f64_")]
    quantile: f64,
    #[serde(deserialize_with = "f64_")]
    value: f64,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JSummaryPoint {
    #[serde(deserialize_with = "nd")]
    attributes: Vec<JKeyValue>,
    #[serde(deserialize_with = "u64_")]
    start_time_unix_nano: u64,
    #[serde(deserialize_with = "u64_")]
    time_unix_nano: u64,
    #[serde(deserialize_with = "u64_")]
    count: u64,
    #[serde(deserialize_with = "f64_")]
    sum: f64,
    #[serde(deserialize_with = "nd")]
    quantile_values: Vec<JQuantile>,
    #[serde(deserialize_with = "u32_")]
    flags: u32,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JLogsRequest {
    #[serde(deserialize_with = "nd")]
    resource_logs: Vec<JResourceLogs>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JResourceLogs {
    #[serde(deserialize_with = "nd")]
    resource: Option<JResource>,
    #[serde(deserialize_with = "nd")]
    scope_logs: Vec<JScopeLogs>,
    #[serde(deserialize_with = "string")]
    schema_url: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JScopeLogs {
    #[serde(deserialize_with = "nd")]
    scope: Option<JScope>,
    #[serde(deserialize_with = "nd")]
    log_records: Vec<JLogRecord>,
    #[serde(deserialize_with = "string")]
    schema_url: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JLogRecord {
    #[serde(deserialize_with = "u64_")]
    time_unix_nano: u64,
    #[serde(deserialize_with = "u64_")]
    observed_time_unix_nano: u64,
    #[serde(deserialize_with = "severity")]
    severity_number: i32,
    #[serde(deserialize_with = "string")]
    severity_text: String,
    #[serde(deserialize_with = "nd")]
    body: Option<JAnyValue>,
    #[serde(deserialize_with = "nd")]
    attributes: Vec<JKeyValue>,
    #[serde(deserialize_with = "u32_")]
    dropped_attributes_count: u32,
    #[serde(deserialize_with = "u32_")]
    flags: u32,
    #[serde(deserialize_with = "hex_bytes")]
    trace_id: Vec<u8>,
    #[serde(deserialize_with = "hex_bytes")]
    span_id: Vec<u8>,
    #[serde(deserialize_with = "string")]
    event_name: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JTracesRequest {
    #[serde(deserialize_with = "nd")]
    resource_spans: Vec<JResourceSpans>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JResourceSpans {
    #[serde(deserialize_with = "nd")]
    resource: Option<JResource>,
    #[serde(deserialize_with = "nd")]
    scope_spans: Vec<JScopeSpans>,
    #[serde(deserialize_with = "string")]
    schema_url: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JScopeSpans {
    #[serde(deserialize_with = "nd")]
    scope: Option<JScope>,
    #[serde(deserialize_with = "nd")]
    spans: Vec<JSpan>,
    #[serde(deserialize_with = "string")]
    schema_url: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JSpan {
    #[serde(deserialize_with = "hex_bytes")]
    trace_id: Vec<u8>,
    #[serde(deserialize_with = "hex_bytes")]
    span_id: Vec<u8>,
    #[serde(deserialize_with = "string")]
    trace_state: String,
    #[serde(deserialize_with = "hex_bytes")]
    parent_span_id: Vec<u8>,
    #[serde(deserialize_with = "u32_")]
    flags: u32,
    #[serde(deserialize_with = "string")]
    name: String,
    #[serde(deserialize_with = "span_kind")]
    kind: i32,
    #[serde(deserialize_with = "u64_")]
    start_time_unix_nano: u64,
    #[serde(deserialize_with = "u64_")]
    end_time_unix_nano: u64,
    #[serde(deserialize_with = "nd")]
    attributes: Vec<JKeyValue>,
    #[serde(deserialize_with = "u32_")]
    dropped_attributes_count: u32,
    #[serde(deserialize_with = "nd")]
    events: Vec<JEvent>,
    #[serde(deserialize_with = "u32_")]
    dropped_events_count: u32,
    #[serde(deserialize_with = "nd")]
    links: Vec<JLink>,
    #[serde(deserialize_with = "u32_")]
    dropped_links_count: u32,
    #[serde(deserialize_with = "nd")]
    status: Option<JStatus>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JEvent {
    #[serde(deserialize_with = "u64_")]
    time_unix_nano: u64,
    #[serde(deserialize_with = "string")]
    name: String,
    #[serde(deserialize_with = "nd")]
    attributes: Vec<JKeyValue>,
    #[serde(deserialize_with = "u32_")]
    dropped_attributes_count: u32,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JLink {
    #[serde(deserialize_with = "hex_bytes")]
    trace_id: Vec<u8>,
    #[serde(deserialize_with = "hex_bytes")]
    span_id: Vec<u8>,
    #[serde(deserialize_with = "string")]
    trace_state: String,
    #[serde(deserialize_with = "nd")]
    attributes: Vec<JKeyValue>,
    #[serde(deserialize_with = "u32_")]
    dropped_attributes_count: u32,
    #[serde(deserialize_with = "u32_")]
    flags: u32,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JStatus {
    #[serde(deserialize_with = "string")]
    message: String,
    #[serde(deserialize_with = "status_code")]
    code: i32,
}

// ---------------------------------------------------------------------------------------------
// Conversions.

fn kvs(v: Vec<JKeyValue>) -> Vec<oc::KeyValue> {
    v.into_iter().map(Into::into).collect()
}

impl From<JKeyValue> for oc::KeyValue {
    fn from(kv: JKeyValue) -> Self {
        oc::KeyValue {
            key: kv.key,
            value: kv.value.map(Into::into),
            ..Default::default()
        }
    }
}

impl From<JAnyValue> for oc::AnyValue {
    fn from(v: JAnyValue) -> Self {
        use oc::any_value::Value;
        let value = if let Some(s) = v.string_value {
            Some(Value::StringValue(s))
        } else if let Some(b) = v.bool_value {
            Some(Value::BoolValue(b))
        } else if let Some(i) = v.int_value {
            Some(Value::IntValue(i))
        } else if let Some(d) = v.double_value {
            Some(Value::DoubleValue(d))
        } else if let Some(a) = v.array_value {
            Some(Value::ArrayValue(oc::ArrayValue {
                values: a.values.into_iter().map(Into::into).collect(),
            }))
        } else if let Some(kv) = v.kvlist_value {
            Some(Value::KvlistValue(oc::KeyValueList {
                values: kvs(kv.values),
            }))
        } else {
            // Invalid base64 degrades to the raw text rather than failing the whole request.
            v.bytes_value
                .map(|b| Value::BytesValue(base64_decode(&b).unwrap_or_else(|| b.into_bytes())))
        };
        oc::AnyValue { value }
    }
}

impl From<JResourceMetrics> for om::ResourceMetrics {
    fn from(r: JResourceMetrics) -> Self {
        om::ResourceMetrics {
            resource: resource(r.resource),
            scope_metrics: r
                .scope_metrics
                .into_iter()
                .map(|s| om::ScopeMetrics {
                    scope: scope(s.scope),
                    metrics: s.metrics.into_iter().map(Into::into).collect(),
                    schema_url: s.schema_url,
                })
                .collect(),
            schema_url: r.schema_url,
        }
    }
}

fn resource(r: Option<JResource>) -> Option<or::Resource> {
    r.map(|r| or::Resource {
        attributes: kvs(r.attributes),
        dropped_attributes_count: r.dropped_attributes_count,
        ..Default::default()
    })
}

fn scope(s: Option<JScope>) -> Option<oc::InstrumentationScope> {
    s.map(|s| oc::InstrumentationScope {
        name: s.name,
        version: s.version,
        attributes: kvs(s.attributes),
        dropped_attributes_count: s.dropped_attributes_count,
    })
}

impl From<JResourceLogs> for ol::ResourceLogs {
    fn from(r: JResourceLogs) -> Self {
        ol::ResourceLogs {
            resource: resource(r.resource),
            scope_logs: r
                .scope_logs
                .into_iter()
                .map(|s| ol::ScopeLogs {
                    scope: scope(s.scope),
                    log_records: s.log_records.into_iter().map(Into::into).collect(),
                    schema_url: s.schema_url,
                })
                .collect(),
            schema_url: r.schema_url,
        }
    }
}

impl From<JResourceSpans> for ot::ResourceSpans {
    fn from(r: JResourceSpans) -> Self {
        ot::ResourceSpans {
            resource: resource(r.resource),
            scope_spans: r
                .scope_spans
                .into_iter()
                .map(|s| ot::ScopeSpans {
                    scope: scope(s.scope),
                    spans: s.spans.into_iter().map(Into::into).collect(),
                    schema_url: s.schema_url,
                })
                .collect(),
            schema_url: r.schema_url,
        }
    }
}

impl From<JSpan> for ot::Span {
    fn from(s: JSpan) -> Self {
        ot::Span {
            trace_id: s.trace_id,
            span_id: s.span_id,
            trace_state: s.trace_state,
            parent_span_id: s.parent_span_id,
            flags: s.flags,
            name: s.name,
            kind: s.kind,
            start_time_unix_nano: s.start_time_unix_nano,
            end_time_unix_nano: s.end_time_unix_nano,
            attributes: kvs(s.attributes),
            dropped_attributes_count: s.dropped_attributes_count,
            events: s
                .events
                .into_iter()
                .map(|e| ot::span::Event {
                    time_unix_nano: e.time_unix_nano,
                    name: e.name,
                    attributes: kvs(e.attributes),
                    dropped_attributes_count: e.dropped_attributes_count,
                })
                .collect(),
            dropped_events_count: s.dropped_events_count,
            links: s
                .links
                .into_iter()
                .map(|l| ot::span::Link {
                    trace_id: l.trace_id,
                    span_id: l.span_id,
                    trace_state: l.trace_state,
                    attributes: kvs(l.attributes),
                    dropped_attributes_count: l.dropped_attributes_count,
                    flags: l.flags,
                })
                .collect(),
            dropped_links_count: s.dropped_links_count,
            status: s.status.map(|st| ot::Status {
                message: st.message,
                code: st.code,
            }),
        }
    }
}

impl From<JLogRecord> for ol::LogRecord {
    fn from(l: JLogRecord) -> Self {
        ol::LogRecord {
            time_unix_nano: l.time_unix_nano,
            observed_time_unix_nano: l.observed_time_unix_nano,
            severity_number: l.severity_number,
            severity_text: l.severity_text,
            body: l.body.map(Into::into),
            attributes: kvs(l.attributes),
            dropped_attributes_count: l.dropped_attributes_count,
            flags: l.flags,
            trace_id: l.trace_id,
            span_id: l.span_id,
            event_name: l.event_name,
        }
    }
}

fn exemplars(v: Vec<JExemplar>) -> Vec<om::Exemplar> {
    v.into_iter()
        .map(|e| om::Exemplar {
            filtered_attributes: kvs(e.filtered_attributes),
            time_unix_nano: e.time_unix_nano,
            span_id: e.span_id,
            trace_id: e.trace_id,
            value: match (e.as_double, e.as_int) {
                (Some(d), _) => Some(om::exemplar::Value::AsDouble(d)),
                (None, Some(i)) => Some(om::exemplar::Value::AsInt(i)),
                _ => None,
            },
        })
        .collect()
}

fn number_points(v: Vec<JNumberPoint>) -> Vec<om::NumberDataPoint> {
    v.into_iter()
        .map(|p| om::NumberDataPoint {
            attributes: kvs(p.attributes),
            start_time_unix_nano: p.start_time_unix_nano,
            time_unix_nano: p.time_unix_nano,
            exemplars: exemplars(p.exemplars),
            flags: p.flags,
            value: match (p.as_double, p.as_int) {
                (Some(d), _) => Some(om::number_data_point::Value::AsDouble(d)),
                (None, Some(i)) => Some(om::number_data_point::Value::AsInt(i)),
                _ => None,
            },
        })
        .collect()
}

fn buckets(b: Option<JBuckets>) -> Option<om::exponential_histogram_data_point::Buckets> {
    b.map(|b| om::exponential_histogram_data_point::Buckets {
        offset: b.offset,
        bucket_counts: b.bucket_counts,
    })
}

impl From<JMetric> for om::Metric {
    fn from(m: JMetric) -> Self {
        use om::metric::Data;
        let data = if let Some(g) = m.gauge {
            Some(Data::Gauge(om::Gauge {
                data_points: number_points(g.data_points),
            }))
        } else if let Some(s) = m.sum {
            Some(Data::Sum(om::Sum {
                data_points: number_points(s.data_points),
                aggregation_temporality: s.aggregation_temporality,
                is_monotonic: s.is_monotonic,
            }))
        } else if let Some(h) = m.histogram {
            Some(Data::Histogram(om::Histogram {
                aggregation_temporality: h.aggregation_temporality,
                data_points: h
                    .data_points
                    .into_iter()
                    .map(|p| om::HistogramDataPoint {
                        attributes: kvs(p.attributes),
                        start_time_unix_nano: p.start_time_unix_nano,
                        time_unix_nano: p.time_unix_nano,
                        count: p.count,
                        sum: p.sum,
                        bucket_counts: p.bucket_counts,
                        explicit_bounds: p.explicit_bounds,
                        exemplars: exemplars(p.exemplars),
                        flags: p.flags,
                        min: p.min,
                        max: p.max,
                    })
                    .collect(),
            }))
        } else if let Some(h) = m.exponential_histogram {
            Some(Data::ExponentialHistogram(om::ExponentialHistogram {
                aggregation_temporality: h.aggregation_temporality,
                data_points: h
                    .data_points
                    .into_iter()
                    .map(|p| om::ExponentialHistogramDataPoint {
                        attributes: kvs(p.attributes),
                        start_time_unix_nano: p.start_time_unix_nano,
                        time_unix_nano: p.time_unix_nano,
                        count: p.count,
                        sum: p.sum,
                        scale: p.scale,
                        zero_count: p.zero_count,
                        positive: buckets(p.positive),
                        negative: buckets(p.negative),
                        flags: p.flags,
                        exemplars: exemplars(p.exemplars),
                        min: p.min,
                        max: p.max,
                        zero_threshold: p.zero_threshold,
                    })
                    .collect(),
            }))
        } else {
            m.summary.map(|s| {
                Data::Summary(om::Summary {
                    data_points: s
                        .data_points
                        .into_iter()
                        .map(|p| om::SummaryDataPoint {
                            attributes: kvs(p.attributes),
                            start_time_unix_nano: p.start_time_unix_nano,
                            time_unix_nano: p.time_unix_nano,
                            count: p.count,
                            sum: p.sum,
                            quantile_values: p
                                .quantile_values
                                .into_iter()
                                .map(|q| om::summary_data_point::ValueAtQuantile {
                                    quantile: q.quantile,
                                    value: q.value,
                                })
                                .collect(),
                            flags: p.flags,
                        })
                        .collect(),
                })
            })
        };
        om::Metric {
            name: m.name,
            description: m.description,
            unit: m.unit,
            metadata: kvs(m.metadata),
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_metric(json_metric: &str) -> om::Metric {
        let body = format!(
            r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{json_metric}]}}]}}]}}"#
        );
        let mut r = decode_metrics_request(body.as_bytes()).unwrap();
        r.resource_metrics
            .remove(0)
            .scope_metrics
            .remove(0)
            .metrics
            .remove(0)
    }

    #[test]
    fn special_doubles_and_string_numbers() {
        let m = one_metric(
            r#"{"name":"g","gauge":{"dataPoints":[{"asDouble":"NaN","timeUnixNano":"1"},{"asDouble":"1.5","timeUnixNano":2}]}}"#,
        );
        let Some(om::metric::Data::Gauge(g)) = m.data else {
            panic!()
        };
        let Some(om::number_data_point::Value::AsDouble(v)) = g.data_points[0].value else {
            panic!()
        };
        assert!(v.is_nan());
        assert_eq!(
            g.data_points[1].value,
            Some(om::number_data_point::Value::AsDouble(1.5))
        );
        assert_eq!(g.data_points[1].time_unix_nano, 2);

        let m = one_metric(
            r#"{"name":"h","histogram":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","dataPoints":[{"sum":"Infinity","count":"1","bucketCounts":["1",0],"explicitBounds":["-Infinity"]}]}}"#,
        );
        let Some(om::metric::Data::Histogram(h)) = m.data else {
            panic!()
        };
        assert_eq!(h.aggregation_temporality, 2);
        assert_eq!(h.data_points[0].sum, Some(f64::INFINITY));
        assert_eq!(h.data_points[0].bucket_counts, vec![1, 0]);
        assert_eq!(h.data_points[0].explicit_bounds, vec![f64::NEG_INFINITY]);

        let m = one_metric(
            r#"{"name":"e","exponentialHistogram":{"aggregationTemporality":2,"dataPoints":[{"scale":"-2","zeroThreshold":"1e-9","positive":{"offset":1,"bucketCounts":["1",2]},"negative":null}]}}"#,
        );
        let Some(om::metric::Data::ExponentialHistogram(h)) = m.data else {
            panic!()
        };
        assert_eq!(h.data_points[0].scale, -2);
        assert_eq!(h.data_points[0].zero_threshold, 1e-9);
        assert_eq!(
            h.data_points[0].positive.as_ref().unwrap().bucket_counts,
            vec![1, 2]
        );
    }

    #[test]
    fn errors_are_errors_not_silent_drops() {
        for bad in [
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"g","sum":{"dataPoints":[{"asDouble":"abc"}]}}]}]}]}"#,
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"g","sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_X"}}]}]}]}"#,
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"g","sum":{"dataPoints":[{"exemplars":[{"traceId":"zz"}]}]}}]}]}]}"#,
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"g","gauge":{"dataPoints":[{"timeUnixNano":"-1"}]}}]}]}]}"#,
        ] {
            assert!(decode_metrics_request(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn any_values_and_nulls() {
        let body = r#"{"resourceMetrics":[{"resource":{"attributes":[
            {"key":"a","value":{"arrayValue":{}}},
            {"key":"b","value":{"bytesValue":"aGk="}},
            {"key":"c","value":{"doubleValue":"NaN"}},
            {"key":"d","value":{"intValue":7}},
            {"key":"e","value":{"kvlistValue":{"values":[{"key":"x","value":{"boolValue":false}}]}}},
            {"key":"f","value":null}
        ]},"scopeMetrics":null,"schemaUrl":null}]}"#;
        let r = decode_metrics_request(body.as_bytes()).unwrap();
        let a = &r.resource_metrics[0].resource.as_ref().unwrap().attributes;
        use oc::any_value::Value;
        let v = |i: usize| a[i].value.as_ref().and_then(|v| v.value.clone());
        assert_eq!(
            v(0),
            Some(Value::ArrayValue(oc::ArrayValue { values: vec![] }))
        );
        assert_eq!(v(1), Some(Value::BytesValue(b"hi".to_vec())));
        assert!(matches!(v(2), Some(Value::DoubleValue(d)) if d.is_nan()));
        assert_eq!(v(3), Some(Value::IntValue(7)));
        assert!(matches!(v(4), Some(Value::KvlistValue(_))));
        assert_eq!(v(5), None);
        assert_eq!(base64_decode("aGVsbG8"), Some(b"hello".to_vec()));
        assert_eq!(base64_decode("a"), None);
    }

    #[test]
    fn logs_request_with_hex_ids_and_severity_names() {
        let body = br#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
            "scopeLogs":[{"scope":{"name":"s"},"logRecords":[{"timeUnixNano":"1700000000000000001","severityNumber":"SEVERITY_NUMBER_ERROR",
            "severityText":"ERROR","body":{"stringValue":"boom"},"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708",
            "attributes":[{"key":"k","value":{"intValue":"7"}}]}]}]}]}"#;
        let r = decode_logs_request(body).unwrap();
        let rec = &r.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(rec.time_unix_nano, 1_700_000_000_000_000_001);
        assert_eq!(rec.severity_number, ol::SeverityNumber::Error as i32);
        assert_eq!(rec.trace_id.len(), 16);
        assert_eq!(rec.span_id, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(decode_logs_request(
            br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"zz"}]}]}]}"#
        )
        .is_err());
    }

    #[test]
    fn traces_request_with_hex_ids_and_enum_names() {
        let body = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
            "scopeSpans":[{"spans":[{"traceId":"0102030405060708090A0B0C0D0E0F10","spanId":"0102030405060708","parentSpanId":"",
            "name":"GET /","kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1","endTimeUnixNano":2,
            "status":{"code":2,"message":"boom"},"events":[{"timeUnixNano":"1","name":"e"}],
            "links":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708"}]}]}]}]}"#;
        let r = decode_traces_request(body).unwrap();
        let s = &r.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(s.trace_id[15], 16);
        assert_eq!(s.kind, 2);
        assert_eq!(s.status.as_ref().unwrap().code, 2);
        assert!(s.parent_span_id.is_empty());
        assert_eq!(s.links[0].span_id.len(), 8);
        assert_eq!(s.end_time_unix_nano, 2);
    }
}
