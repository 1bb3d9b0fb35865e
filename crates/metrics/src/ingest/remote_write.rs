//! Prometheus remote_write 1.0 and 2.0 decoding: content negotiation, bounded Snappy block
//! decompression, protobuf decoding and validation into a [`WriteBatch`].
//!
//! Choices (upstream evidence in brackets):
//! - Version from `Content-Type`: empty, `application/x-protobuf` or `;proto=prometheus.WriteRequest`
//!   is 1.0, `;proto=io.prometheus.write.v2.Request` is 2.0, anything else 415 [Prometheus
//!   `writeHandler.parseProtoMsg`]. A missing `Content-Encoding` means snappy (Prometheus keeps
//!   "yolo" 1.0 clients working); any other encoding is 415.
//! - Labels with empty values are dropped and unsorted labels are sorted rather than rejected
//!   [Mimir `prePushRelabelMiddleware`: `RemoveEmptyLabelValues`, `SortLabelsIfNeeded`]; duplicate
//!   names are rejected. See [`super::validate`].
//! - **The whole request is rejected on the first invalid series** (no partial writes). Mimir and
//!   Prometheus write the valid series and still answer 400; we prefer atomic requests so that a 400
//!   always means "nothing was written", which keeps the v2 `*-Written` headers trivially honest and
//!   the write path free of per-series error bookkeeping. The price: one bad series drops its
//!   whole batch (the sender does not retry a 400 either way).
//! - Invalid exemplars are dropped and counted, not fatal, as Prometheus does when appending
//!   exemplars fails; exemplars are optional trace hints.
//! - remote_write 2.0 `start_timestamp`s are decoded but not stored yet (the model has no field).
//! - Names use the legacy charset for both versions (Mimir's default name validation).

use std::collections::HashSet;
use std::sync::Arc;

use common::limits::Limits;
use common::{Label, Labels};
use prost::Message;
use proto::prometheus as v1;
use proto::prometheus_v2 as v2;

use super::decompress::{snappy_block, too_large};
use super::validate::{check_not_in_future, validate_exemplar_labels, validate_series_labels};
use crate::model::{
    Exemplar, Histogram, HistogramSample, Metadata, MetricType, ResetHint, Sample, SeriesWrite, Span,
    WriteBatch,
};
use crate::Error;

pub use super::validate::{valid_label_name, valid_metric_name};

/// `Content-Type` of remote_write 1.0 requests.
pub const CONTENT_TYPE_V1: &str = "application/x-protobuf";
/// `Content-Type` of remote_write 2.0 requests.
pub const CONTENT_TYPE_V2: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

/// The remote_write protocol version of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RwVersion {
    /// `prometheus.WriteRequest`.
    V1,
    /// `io.prometheus.write.v2.Request`.
    V2,
}

/// A decoded and validated remote_write request.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    /// Series, samples, histograms, exemplars and metadata to write.
    pub batch: WriteBatch,
    /// Which protocol version the request used (2.0 needs the `*-Written` response headers).
    pub version: RwVersion,
    /// Exemplars dropped because they were invalid (bad labels, missing timestamp in 2.0).
    pub dropped_exemplars: u64,
}

/// Selects the protocol version from the `Content-Type` header, as Prometheus does; anything
/// other than the two remote_write messages is [`Error::UnsupportedMediaType`].
pub fn negotiate(content_type: Option<&str>) -> Result<RwVersion, Error> {
    let ct = content_type.map(str::trim).unwrap_or("");
    if ct.is_empty() {
        return Ok(RwVersion::V1);
    }
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case(CONTENT_TYPE_V1) {
        return Err(Error::UnsupportedMediaType(format!(
            "expected {CONTENT_TYPE_V1} as the media type, got content-type {ct:?}"
        )));
    }
    for p in parts {
        let Some((k, v)) = p.split_once('=') else {
            return Err(Error::UnsupportedMediaType(format!(
                "content-type parameters must be key=value, got {p:?} in {ct:?}"
            )));
        };
        if k.trim().eq_ignore_ascii_case("proto") {
            return match v.trim().trim_matches('"') {
                "prometheus.WriteRequest" => Ok(RwVersion::V1),
                "io.prometheus.write.v2.Request" => Ok(RwVersion::V2),
                other => Err(Error::UnsupportedMediaType(format!(
                    "unknown remote write protobuf message {other:?}; accepted: prometheus.WriteRequest, \
                     io.prometheus.write.v2.Request"
                ))),
            };
        }
    }
    Ok(RwVersion::V1)
}

/// Decodes a remote_write request body (Snappy block compressed protobuf), choosing the version from
/// `content_type`, and validates it against `limits`. `now_ms` is the server clock for the future
/// timestamp check.
pub fn decode(
    body: &[u8],
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    limits: &Limits,
    now_ms: i64,
) -> Result<Decoded, Error> {
    let version = negotiate(content_type)?;
    let enc = content_encoding.map(str::trim).unwrap_or("");
    if !(enc.is_empty() || enc.eq_ignore_ascii_case("snappy")) {
        return Err(Error::UnsupportedMediaType(format!(
            "{enc} encoding (compression) is not accepted by this server; only snappy is acceptable"
        )));
    }
    let max = limits.max_request_size_bytes;
    if body.len() > max {
        return Err(too_large(max));
    }
    let raw = snappy_block(body, max)?;
    match version {
        RwVersion::V1 => {
            let req = v1::WriteRequest::decode(raw.as_slice()).map_err(decode_err)?;
            decode_v1(req, limits, now_ms)
        }
        RwVersion::V2 => {
            let req = v2::Request::decode(raw.as_slice()).map_err(decode_err)?;
            decode_v2(req, limits, now_ms)
        }
    }
}

fn decode_err(e: prost::DecodeError) -> Error {
    // prost reports invalid UTF-8 in strings as "invalid string value: data is not UTF-8 encoded".
    Error::BadData(format!("failed to decode remote write request protobuf: {e}"))
}

/// Validates an already decoded remote_write 1.0 request.
pub fn decode_v1(req: v1::WriteRequest, limits: &Limits, now_ms: i64) -> Result<Decoded, Error> {
    let mut batch = WriteBatch {
        series: Vec::with_capacity(req.timeseries.len()),
        metadata: Vec::with_capacity(req.metadata.len()),
    };
    let mut dropped_exemplars = 0;
    for ts in req.timeseries {
        let labels = ts.labels.into_iter().map(|l| Label::new(l.name, l.value)).collect();
        let labels = validate_series_labels(labels, limits).map_err(Error::BadData)?;
        let samples = convert_samples(ts.samples.iter().map(|s| (s.timestamp, s.value)), &labels, limits, now_ms)?;
        let mut histograms = Vec::with_capacity(ts.histograms.len());
        for h in ts.histograms {
            histograms.push(convert_histogram(h, &labels, limits, now_ms)?);
        }
        let mut exemplars = Vec::with_capacity(ts.exemplars.len());
        for e in ts.exemplars {
            let ls = e.labels.into_iter().map(|l| Label::new(l.name, l.value)).collect();
            match validate_exemplar_labels(ls) {
                Ok(labels) => exemplars.push(Exemplar {
                    labels,
                    value: e.value,
                    t: e.timestamp,
                }),
                Err(_) => dropped_exemplars += 1,
            }
        }
        batch.series.push(SeriesWrite {
            labels,
            samples,
            histograms,
            exemplars,
        });
    }
    for m in req.metadata {
        // Prometheus ignores 1.0 metadata entirely; Mimir rejects nameless entries. Dropping them
        // keeps a metadata-only request from failing the samples sent alongside.
        if m.metric_family_name.is_empty() {
            continue;
        }
        batch.metadata.push((
            m.metric_family_name,
            Metadata {
                metric_type: metric_type(m.r#type),
                help: m.help,
                unit: m.unit,
            },
        ));
    }
    Ok(Decoded {
        batch,
        version: RwVersion::V1,
        dropped_exemplars,
    })
}

/// Validates an already decoded remote_write 2.0 request, resolving symbol references.
pub fn decode_v2(req: v2::Request, limits: &Limits, now_ms: i64) -> Result<Decoded, Error> {
    let symbols = req.symbols;
    if symbols.first().is_some_and(|s| !s.is_empty()) {
        return Err(Error::BadData(
            "symbols[0] must be the empty string in a remote write 2.0 request".into(),
        ));
    }
    let sym = |r: u32, what: &str, i: usize| -> Result<&str, Error> {
        symbols.get(r as usize).map(String::as_str).ok_or_else(|| {
            Error::BadData(format!(
                "{what} reference {r} out of range (symbols: {}) in timeseries {i}",
                symbols.len()
            ))
        })
    };
    let resolve = |refs: &[u32], what: &str, i: usize| -> Result<Vec<Label>, Error> {
        if refs.len() % 2 != 0 {
            return Err(Error::BadData(format!(
                "{what} must hold (name, value) reference pairs, got an odd count {} in timeseries {i}",
                refs.len()
            )));
        }
        refs.chunks_exact(2)
            .map(|p| Ok(Label::new(sym(p[0], what, i)?, sym(p[1], what, i)?)))
            .collect()
    };

    let mut batch = WriteBatch {
        series: Vec::with_capacity(req.timeseries.len()),
        metadata: Vec::new(),
    };
    let mut seen_meta: HashSet<String> = HashSet::new();
    let mut dropped_exemplars = 0;
    for (i, ts) in req.timeseries.into_iter().enumerate() {
        let labels = resolve(&ts.labels_refs, "label", i)?;
        let labels = validate_series_labels(labels, limits).map_err(Error::BadData)?;
        if !ts.samples.is_empty() && !ts.histograms.is_empty() {
            return Err(Error::BadData(format!(
                "a timeseries must carry either samples or histograms, not both, series: '{}'",
                super::validate::format_series(&labels.clone().into_vec())
            )));
        }
        let samples = convert_samples(ts.samples.iter().map(|s| (s.timestamp, s.value)), &labels, limits, now_ms)?;
        let mut histograms = Vec::with_capacity(ts.histograms.len());
        for h in ts.histograms {
            histograms.push(convert_histogram(v2_histogram(h), &labels, limits, now_ms)?);
        }
        let mut exemplars = Vec::with_capacity(ts.exemplars.len());
        for e in &ts.exemplars {
            let ls = resolve(&e.labels_refs, "exemplar label", i)?;
            // 2.0 exemplars MUST carry a timestamp.
            match validate_exemplar_labels(ls) {
                Ok(el) if e.timestamp != 0 => exemplars.push(Exemplar {
                    labels: el,
                    value: e.value,
                    t: e.timestamp,
                }),
                _ => dropped_exemplars += 1,
            }
        }
        if let Some(m) = ts.metadata {
            let help = sym(m.help_ref, "help", i)?;
            let unit = sym(m.unit_ref, "unit", i)?;
            let name = labels.metric_name().unwrap_or_default();
            if (m.r#type != 0 || !help.is_empty() || !unit.is_empty()) && seen_meta.insert(name.to_string()) {
                batch.metadata.push((
                    name.to_string(),
                    Metadata {
                        metric_type: metric_type(m.r#type),
                        help: help.to_string(),
                        unit: unit.to_string(),
                    },
                ));
            }
        }
        batch.series.push(SeriesWrite {
            labels,
            samples,
            histograms,
            exemplars,
        });
    }
    Ok(Decoded {
        batch,
        version: RwVersion::V2,
        dropped_exemplars,
    })
}

fn convert_samples(
    it: impl ExactSizeIterator<Item = (i64, f64)>,
    labels: &Labels,
    limits: &Limits,
    now_ms: i64,
) -> Result<Vec<Sample>, Error> {
    let mut out = Vec::with_capacity(it.len());
    for (t, v) in it {
        check_not_in_future(t, now_ms, limits, labels).map_err(Error::BadData)?;
        out.push(Sample { t, v });
    }
    Ok(out)
}

/// The 1.0 and 2.0 enums share numbers: 0 unknown/unspecified, 1..7 as in [`MetricType`].
fn metric_type(t: i32) -> MetricType {
    match t {
        1 => MetricType::Counter,
        2 => MetricType::Gauge,
        3 => MetricType::Histogram,
        4 => MetricType::GaugeHistogram,
        5 => MetricType::Summary,
        6 => MetricType::Info,
        7 => MetricType::StateSet,
        _ => MetricType::Unknown,
    }
}

/// Fields 1–16 of the 2.0 histogram are those of 1.0; the start timestamp is not stored yet.
fn v2_histogram(h: v2::Histogram) -> v1::Histogram {
    use v1::histogram::{Count, ZeroCount};
    let span = |s: v2::BucketSpan| v1::BucketSpan {
        offset: s.offset,
        length: s.length,
    };
    v1::Histogram {
        count: h.count.map(|c| match c {
            v2::histogram::Count::CountInt(n) => Count::CountInt(n),
            v2::histogram::Count::CountFloat(f) => Count::CountFloat(f),
        }),
        sum: h.sum,
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: h.zero_count.map(|c| match c {
            v2::histogram::ZeroCount::ZeroCountInt(n) => ZeroCount::ZeroCountInt(n),
            v2::histogram::ZeroCount::ZeroCountFloat(f) => ZeroCount::ZeroCountFloat(f),
        }),
        negative_spans: h.negative_spans.into_iter().map(span).collect(),
        negative_deltas: h.negative_deltas,
        negative_counts: h.negative_counts,
        positive_spans: h.positive_spans.into_iter().map(span).collect(),
        positive_deltas: h.positive_deltas,
        positive_counts: h.positive_counts,
        reset_hint: h.reset_hint,
        timestamp: h.timestamp,
        custom_values: h.custom_values,
    }
}

/// Schema of native histograms with custom bucket bounds (NHCB).
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// Converts a wire histogram to the float model (integer deltas become absolute counts) and
/// validates it like Prometheus' `Histogram.Validate`.
fn convert_histogram(
    h: v1::Histogram,
    labels: &Labels,
    limits: &Limits,
    now_ms: i64,
) -> Result<HistogramSample, Error> {
    use v1::histogram::{Count, ZeroCount};
    check_not_in_future(h.timestamp, now_ms, limits, labels).map_err(Error::BadData)?;
    let bad = |msg: String| {
        Error::BadData(format!(
            "received an invalid native histogram, timestamp: {} series: '{}': {msg}",
            h.timestamp,
            super::validate::format_series(&labels.clone().into_vec())
        ))
    };
    let custom = h.schema == CUSTOM_BUCKETS_SCHEMA;
    if !custom && !(-4..=8).contains(&h.schema) {
        return Err(bad(format!(
            "schema {} is not supported (must be -4..8 or -53)",
            h.schema
        )));
    }
    let is_float = matches!(h.count, Some(Count::CountFloat(_)));
    let (pos, neg, count, zero_count) = if is_float {
        let zc = match h.zero_count {
            Some(ZeroCount::ZeroCountFloat(f)) => f,
            Some(ZeroCount::ZeroCountInt(n)) => n as f64,
            None => 0.0,
        };
        let c = match h.count {
            Some(Count::CountFloat(f)) => f,
            _ => 0.0,
        };
        if h.positive_counts.iter().chain(&h.negative_counts).any(|&v| v < 0.0) || zc < 0.0 {
            return Err(bad("a bucket has a negative observation count".into()));
        }
        (h.positive_counts, h.negative_counts, c, zc)
    } else {
        let pos = absolute(&h.positive_deltas).ok_or_else(|| bad("a positive bucket has a negative observation count".into()))?;
        let neg = absolute(&h.negative_deltas).ok_or_else(|| bad("a negative bucket has a negative observation count".into()))?;
        let zc = match h.zero_count {
            Some(ZeroCount::ZeroCountInt(n)) => n,
            Some(ZeroCount::ZeroCountFloat(f)) => f as u64,
            None => 0,
        };
        let c = match h.count {
            Some(Count::CountInt(n)) => n,
            _ => 0,
        };
        let in_buckets: u128 = pos.iter().chain(&neg).map(|&v| v as u128).sum::<u128>() + zc as u128;
        let count_ok = if h.sum.is_nan() {
            in_buckets <= c as u128
        } else {
            in_buckets == c as u128
        };
        if !count_ok {
            return Err(bad(format!(
                "{in_buckets} observations found in buckets, but the Count field is {c}"
            )));
        }
        (
            pos.into_iter().map(|v| v as f64).collect(),
            neg.into_iter().map(|v| v as f64).collect(),
            c as f64,
            zc as f64,
        )
    };
    check_spans(&h.positive_spans, pos.len()).map_err(|e| bad(format!("positive side: {e}")))?;
    check_spans(&h.negative_spans, neg.len()).map_err(|e| bad(format!("negative side: {e}")))?;
    if custom {
        if !neg.is_empty() || !h.negative_spans.is_empty() {
            return Err(bad("custom-bucket histograms must not have negative buckets".into()));
        }
        if !h.custom_values.windows(2).all(|w| w[0] < w[1]) || h.custom_values.iter().any(|v| v.is_nan()) {
            return Err(bad("custom bucket bounds must be strictly increasing".into()));
        }
        if h.custom_values.last() == Some(&f64::INFINITY) {
            return Err(bad("the +Inf custom bucket bound must not be explicit".into()));
        }
        let max_idx = span_max_index(&h.positive_spans);
        if max_idx.is_some_and(|m| m < 0 || m > h.custom_values.len() as i64) {
            return Err(bad("a bucket index is beyond the custom bucket bounds".into()));
        }
    } else if !h.custom_values.is_empty() {
        return Err(bad("custom bucket bounds are only allowed with schema -53".into()));
    }
    let spans = |s: Vec<v1::BucketSpan>| {
        s.into_iter()
            .map(|s| Span {
                offset: s.offset,
                length: s.length,
            })
            .collect()
    };
    Ok(HistogramSample {
        t: h.timestamp,
        h: Arc::new(Histogram {
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count,
            count,
            sum: h.sum,
            positive_spans: spans(h.positive_spans),
            positive_buckets: pos,
            negative_spans: spans(h.negative_spans),
            negative_buckets: neg,
            custom_values: h.custom_values,
            reset_hint: match h.reset_hint {
                1 => ResetHint::Yes,
                2 => ResetHint::No,
                3 => ResetHint::Gauge,
                _ => ResetHint::Unknown,
            },
        }),
    })
}

/// Turns delta-encoded integer buckets into absolute counts; `None` if one goes negative.
fn absolute(deltas: &[i64]) -> Option<Vec<u64>> {
    let mut cur: i64 = 0;
    let mut out = Vec::with_capacity(deltas.len());
    for &d in deltas {
        cur = cur.checked_add(d)?;
        out.push(u64::try_from(cur).ok()?);
    }
    Some(out)
}

fn check_spans(spans: &[v1::BucketSpan], buckets: usize) -> Result<(), String> {
    let mut total: u64 = 0;
    for (i, s) in spans.iter().enumerate() {
        if i > 0 && s.offset < 0 {
            return Err(format!("span number {} with offset {} is negative", i + 1, s.offset));
        }
        total += u64::from(s.length);
    }
    if total != buckets as u64 {
        return Err(format!(
            "spans need {total} buckets, have {buckets} buckets"
        ));
    }
    Ok(())
}

fn span_max_index(spans: &[v1::BucketSpan]) -> Option<i64> {
    let mut idx: i64 = 0;
    let mut max = None;
    for s in spans {
        idx += i64::from(s.offset);
        if s.length > 0 {
            idx += i64::from(s.length);
            max = Some(idx - 1);
        }
    }
    max
}
