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
    Exemplar, Histogram, HistogramSample, Metadata, MetricType, RawWrite, ResetHint, Sample,
    SeriesWrite, Span, WriteBatch,
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
        return Err(too_large(max).into());
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

/// A decoded remote_write request: borrowed ([`RawWrite`], the fast path for float-only 1.0
/// requests) or owned (everything else).
#[derive(Debug)]
pub enum DecodedRef<'a> {
    /// Float samples only, borrowed from the decompressed body.
    Raw(RawWrite<'a>),
    /// The full decoder's result.
    Full(Decoded),
}

/// Decompresses a remote_write body into `buf` (reused by the caller) after the same negotiation and
/// size checks as [`decode`]. Returns the version.
pub fn decompress_into(
    body: &[u8],
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    limits: &Limits,
    buf: &mut Vec<u8>,
) -> Result<RwVersion, Error> {
    let version = negotiate(content_type)?;
    let enc = content_encoding.map(str::trim).unwrap_or("");
    if !(enc.is_empty() || enc.eq_ignore_ascii_case("snappy")) {
        return Err(Error::UnsupportedMediaType(format!(
            "{enc} encoding (compression) is not accepted by this server; only snappy is acceptable"
        )));
    }
    let max = limits.max_request_size_bytes;
    if body.len() > max {
        return Err(too_large(max).into());
    }
    *buf = snappy_block(body, max)?;
    Ok(version)
}

/// [`decode`] with a zero-copy fast path: `raw` is the decompressed body from [`decompress_into`].
/// The result is the same as [`decode`]'s (same errors and messages), only borrowed when possible.
pub fn decode_decompressed<'a>(
    raw: &'a [u8],
    version: RwVersion,
    limits: &Limits,
    now_ms: i64,
) -> Result<DecodedRef<'a>, Error> {
    match version {
        RwVersion::V1 => {
            if let Some(w) = super::rw_wire::decode_v1_raw(raw, limits, now_ms) {
                return Ok(DecodedRef::Raw(w));
            }
            let req = v1::WriteRequest::decode(raw).map_err(decode_err)?;
            decode_v1(req, limits, now_ms).map(DecodedRef::Full)
        }
        RwVersion::V2 => {
            let req = v2::Request::decode(raw).map_err(decode_err)?;
            decode_v2(req, limits, now_ms).map(DecodedRef::Full)
        }
    }
}

fn decode_err(e: prost::DecodeError) -> Error {
    // prost reports invalid UTF-8 in strings as "invalid string value: data is not UTF-8 encoded".
    Error::BadData(format!(
        "failed to decode remote write request protobuf: {e}"
    ))
}

/// Validates an already decoded remote_write 1.0 request.
pub fn decode_v1(req: v1::WriteRequest, limits: &Limits, now_ms: i64) -> Result<Decoded, Error> {
    let mut batch = WriteBatch {
        series: Vec::with_capacity(req.timeseries.len()),
        metadata: Vec::with_capacity(req.metadata.len()),
    };
    let mut dropped_exemplars = 0;
    for ts in req.timeseries {
        let labels = ts
            .labels
            .into_iter()
            .map(|l| Label::new(l.name, l.value))
            .collect();
        let labels = validate_series_labels(labels, limits).map_err(Error::BadData)?;
        let samples = convert_samples(
            ts.samples.iter().map(|s| (s.timestamp, s.value)),
            &labels,
            limits,
            now_ms,
        )?;
        let mut histograms = Vec::with_capacity(ts.histograms.len());
        for h in ts.histograms {
            histograms.push(convert_histogram(h, &labels, limits, now_ms)?);
        }
        let mut exemplars = Vec::with_capacity(ts.exemplars.len());
        for e in ts.exemplars {
            let ls = e
                .labels
                .into_iter()
                .map(|l| Label::new(l.name, l.value))
                .collect();
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
        if refs.len() & 1 == 1 {
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
        let samples = convert_samples(
            ts.samples.iter().map(|s| (s.timestamp, s.value)),
            &labels,
            limits,
            now_ms,
        )?;
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
            if (m.r#type != 0 || !help.is_empty() || !unit.is_empty())
                && seen_meta.insert(name.to_string())
            {
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

/// Fields 1–16 of the 2.0 histogram are those of 1.0 (same oneof and span types); the start
/// timestamp is not stored yet.
fn v2_histogram(h: v2::Histogram) -> v1::Histogram {
    v1::Histogram {
        count: h.count,
        sum: h.sum,
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: h.zero_count,
        negative_spans: h.negative_spans,
        negative_deltas: h.negative_deltas,
        negative_counts: h.negative_counts,
        positive_spans: h.positive_spans,
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
    let (np, nn) = if is_float {
        (h.positive_counts.len(), h.negative_counts.len())
    } else {
        (h.positive_deltas.len(), h.negative_deltas.len())
    };
    check_spans(&h.positive_spans, np).map_err(|e| bad(format!("positive side: {e}")))?;
    check_spans(&h.negative_spans, nn).map_err(|e| bad(format!("negative side: {e}")))?;
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
        if h.positive_counts
            .iter()
            .chain(&h.negative_counts)
            .any(|&v| v < 0.0)
            || zc < 0.0
        {
            return Err(bad("a bucket has a negative observation count".into()));
        }
        (h.positive_counts, h.negative_counts, c, zc)
    } else {
        let pos = absolute(&h.positive_deltas)
            .ok_or_else(|| bad("a positive bucket has a negative observation count".into()))?;
        let neg = absolute(&h.negative_deltas)
            .ok_or_else(|| bad("a negative bucket has a negative observation count".into()))?;
        let zc = match h.zero_count {
            Some(ZeroCount::ZeroCountInt(n)) => n,
            Some(ZeroCount::ZeroCountFloat(f)) => f as u64,
            None => 0,
        };
        let c = match h.count {
            Some(Count::CountInt(n)) => n,
            _ => 0,
        };
        let in_buckets: u128 =
            pos.iter().chain(&neg).map(|&v| v as u128).sum::<u128>() + zc as u128;
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
    if custom {
        if !neg.is_empty() || !h.negative_spans.is_empty() {
            return Err(bad(
                "custom-bucket histograms must not have negative buckets".into(),
            ));
        }
        if !h.custom_values.windows(2).all(|w| w[0] < w[1])
            || h.custom_values.iter().any(|v| v.is_nan())
        {
            return Err(bad(
                "custom bucket bounds must be strictly increasing".into()
            ));
        }
        if h.custom_values.last() == Some(&f64::INFINITY) {
            return Err(bad(
                "the +Inf custom bucket bound must not be explicit".into()
            ));
        }
        let max_idx = span_max_index(&h.positive_spans);
        if max_idx.is_some_and(|m| m < 0 || m > h.custom_values.len() as i64) {
            return Err(bad(
                "a bucket index is beyond the custom bucket bounds".into()
            ));
        }
    } else if !h.custom_values.is_empty() {
        return Err(bad(
            "custom bucket bounds are only allowed with schema -53".into()
        ));
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
            return Err(format!(
                "span number {} with offset {} is negative",
                i + 1,
                s.offset
            ));
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

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn lbl(n: &str, v: &str) -> v1::Label {
        v1::Label {
            name: n.into(),
            value: v.into(),
        }
    }

    fn series(labels: &[(&str, &str)]) -> v1::TimeSeries {
        v1::TimeSeries {
            labels: labels.iter().map(|(n, v)| lbl(n, v)).collect(),
            samples: vec![v1::Sample {
                value: 1.5,
                timestamp: NOW,
            }],
            ..Default::default()
        }
    }

    fn body(msg: &impl Message) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&msg.encode_to_vec())
            .unwrap()
    }

    fn v1_req(ts: Vec<v1::TimeSeries>) -> Vec<u8> {
        body(&v1::WriteRequest {
            timeseries: ts,
            metadata: vec![],
        })
    }

    fn dec(b: &[u8]) -> Result<Decoded, Error> {
        decode(
            b,
            Some(CONTENT_TYPE_V1),
            Some("snappy"),
            &Limits::default(),
            NOW,
        )
    }

    fn bad(b: &[u8]) -> String {
        let e = dec(b).unwrap_err();
        assert_eq!(e.status(), 400, "{e}");
        e.to_string()
    }

    #[test]
    fn v1_happy_path_sorts_and_drops_empty_values() {
        let mut ts = series(&[
            ("job", "a"),
            ("__name__", "up"),
            ("empty", ""),
            ("instance", "x"),
        ]);
        ts.exemplars.push(v1::Exemplar {
            labels: vec![lbl("trace_id", "abc")],
            value: 2.0,
            timestamp: NOW,
        });
        // Invalid exemplars (no labels, bad label name) are dropped, not fatal.
        ts.exemplars.push(v1::Exemplar {
            labels: vec![],
            value: 2.0,
            timestamp: NOW,
        });
        ts.exemplars.push(v1::Exemplar {
            labels: vec![lbl("trace-id", "x")],
            value: 2.0,
            timestamp: NOW,
        });
        let req = v1::WriteRequest {
            timeseries: vec![ts],
            metadata: vec![v1::MetricMetadata {
                r#type: v1::metric_metadata::MetricType::Counter as i32,
                metric_family_name: "up".into(),
                help: "h".into(),
                unit: "seconds".into(),
            }],
        };
        let d = dec(&body(&req)).unwrap();
        assert_eq!(d.version, RwVersion::V1);
        let s = &d.batch.series[0];
        assert_eq!(
            s.labels.to_string(),
            r#"{__name__="up", instance="x", job="a"}"#
        );
        assert_eq!(s.samples, vec![Sample { t: NOW, v: 1.5 }]);
        assert_eq!(s.exemplars[0].labels.get("trace_id"), Some("abc"));
        assert_eq!((s.exemplars.len(), d.dropped_exemplars), (1, 2));
        assert_eq!(d.batch.metadata[0].0, "up");
        assert_eq!(d.batch.metadata[0].1.metric_type, MetricType::Counter);
        assert_eq!(d.batch.metadata[0].1.unit, "seconds");
    }

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(None).unwrap(), RwVersion::V1);
        assert_eq!(
            negotiate(Some("application/x-protobuf")).unwrap(),
            RwVersion::V1
        );
        assert_eq!(
            negotiate(Some("application/x-protobuf;proto=prometheus.WriteRequest")).unwrap(),
            RwVersion::V1
        );
        assert_eq!(negotiate(Some(CONTENT_TYPE_V2)).unwrap(), RwVersion::V2);
        assert_eq!(
            negotiate(Some(
                "application/x-protobuf; proto=io.prometheus.write.v2.Request"
            ))
            .unwrap(),
            RwVersion::V2
        );
        for ct in [
            "text/plain",
            "application/x-protobuf;proto=foo.Bar",
            "application/x-protobuf;junk",
        ] {
            assert_eq!(negotiate(Some(ct)).unwrap_err().status(), 415, "{ct}");
        }
        let b = v1_req(vec![series(&[("__name__", "up")])]);
        let e = decode(&b, None, Some("gzip"), &Limits::default(), NOW).unwrap_err();
        assert_eq!(e.status(), 415);
        assert!(decode(&b, None, None, &Limits::default(), NOW).is_ok());
    }

    #[test]
    fn size_limit_checked_on_decoded_length() {
        let b = v1_req(vec![series(&[("__name__", "up"), ("a", &"x".repeat(500))])]);
        let limits = Limits {
            max_request_size_bytes: 100,
            ..Default::default()
        };
        let e = decode(&b, None, None, &limits, NOW).unwrap_err();
        assert_eq!(e.status(), 413);
        assert!(
            e.to_string().contains("100 bytes (max_request_size_bytes)"),
            "{e}"
        );
        assert_eq!(dec(b"\x05not snappy").unwrap_err().status(), 400);
    }

    #[test]
    fn invalid_utf8_is_bad_data() {
        // TimeSeries{labels: [Label{name: "__name__", value: "\xff"}]} by hand.
        let label = [&[0x0a, 8][..], b"__name__", &[0x12, 1, 0xff]].concat();
        let ts = [&[0x0a, label.len() as u8][..], &label].concat();
        let req = [&[0x0a, ts.len() as u8][..], &ts].concat();
        let b = snap::raw::Encoder::new().compress_vec(&req).unwrap();
        let e = bad(&b);
        assert!(e.contains("UTF-8"), "{e}");
    }

    #[test]
    fn label_rejections() {
        assert_eq!(
            bad(&v1_req(vec![series(&[])])),
            "received series has no metric name"
        );
        assert_eq!(
            bad(&v1_req(vec![series(&[("a", "b")])])),
            "received series has no metric name"
        );
        assert_eq!(
            bad(&v1_req(vec![series(&[("__name__", "")])])),
            "received series has no metric name"
        );
        assert!(bad(&v1_req(vec![series(&[("__name__", "a.b")])]))
            .contains("invalid metric name: 'a.b'"));
        assert!(
            bad(&v1_req(vec![series(&[("__name__", "m"), ("a-b", "1")])]))
                .contains("invalid label: 'a-b'")
        );
        assert!(bad(&v1_req(vec![series(&[("__name__", "m"), ("", "1")])]))
            .contains("invalid label: ''"));
        assert!(bad(&v1_req(vec![series(&[
            ("__name__", "m"),
            ("a", "1"),
            ("a", "1")
        ])]))
        .contains("duplicate label name, label: 'a'"));
        let many: Vec<(String, String)> = (0..30)
            .map(|i| (format!("l{i:02}"), "v".to_string()))
            .collect();
        let mut pairs: Vec<(&str, &str)> =
            many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        pairs.push(("__name__", "m"));
        let e = bad(&v1_req(vec![series(&pairs)]));
        assert!(
            e.starts_with("received a series whose number of labels exceeds the limit (actual: 31, limit: 30) series: 'm{l00=\"v\", "),
            "{e}"
        );
        let long = "x".repeat(1025);
        assert!(
            bad(&v1_req(vec![series(&[("__name__", "m"), (&long, "1")])]))
                .contains("limit: 1024 bytes")
        );
        let long = "x".repeat(2049);
        assert!(
            bad(&v1_req(vec![series(&[("__name__", "m"), ("a", &long)])]))
                .contains("limit: 2048 bytes")
        );
    }

    #[test]
    fn future_sample_rejected() {
        let mut ts = series(&[("__name__", "m")]);
        ts.samples[0].timestamp = NOW + 600_001;
        let e = bad(&v1_req(vec![ts]));
        assert!(e.contains("too far in the future"), "{e}");
    }

    #[test]
    fn one_bad_series_rejects_the_whole_request() {
        let b = v1_req(vec![
            series(&[("__name__", "ok")]),
            series(&[("__name__", "1bad")]),
        ]);
        assert!(bad(&b).contains("1bad"));
    }

    fn int_hist() -> v1::Histogram {
        use v1::histogram::{Count, ZeroCount};
        v1::Histogram {
            count: Some(Count::CountInt(9)),
            sum: 20.0,
            schema: 0,
            zero_threshold: 0.001,
            zero_count: Some(ZeroCount::ZeroCountInt(1)),
            positive_spans: vec![
                v1::BucketSpan {
                    offset: 1,
                    length: 2,
                },
                v1::BucketSpan {
                    offset: 1,
                    length: 1,
                },
            ],
            positive_deltas: vec![2, 1, -1], // 2, 3, 2
            negative_spans: vec![v1::BucketSpan {
                offset: 0,
                length: 1,
            }],
            negative_deltas: vec![1],
            reset_hint: 2,
            timestamp: NOW,
            ..Default::default()
        }
    }

    #[test]
    fn integer_histogram_deltas_become_absolute() {
        let mut ts = series(&[("__name__", "h")]);
        ts.samples.clear();
        ts.histograms.push(int_hist());
        let d = dec(&v1_req(vec![ts])).unwrap();
        let h = &d.batch.series[0].histograms[0];
        assert_eq!(h.t, NOW);
        assert_eq!(h.h.positive_buckets, vec![2.0, 3.0, 2.0]);
        assert_eq!(h.h.negative_buckets, vec![1.0]);
        assert_eq!((h.h.count, h.h.zero_count, h.h.sum), (9.0, 1.0, 20.0));
        assert_eq!(
            h.h.positive_spans[1],
            Span {
                offset: 1,
                length: 1
            }
        );
        assert_eq!(h.h.reset_hint, ResetHint::No);
    }

    #[test]
    fn float_histogram_and_histogram_rejections() {
        use v1::histogram::{Count, ZeroCount};
        let fh = v1::Histogram {
            count: Some(Count::CountFloat(3.5)),
            zero_count: Some(ZeroCount::ZeroCountFloat(0.5)),
            positive_spans: vec![v1::BucketSpan {
                offset: -2,
                length: 2,
            }],
            positive_counts: vec![1.0, 2.0],
            sum: 1.0,
            timestamp: NOW,
            ..Default::default()
        };
        let mut ts = series(&[("__name__", "h")]);
        ts.samples.clear();
        ts.histograms.push(fh);
        let d = dec(&v1_req(vec![ts.clone()])).unwrap();
        assert_eq!(
            d.batch.series[0].histograms[0].h.positive_buckets,
            vec![1.0, 2.0]
        );
        assert_eq!(d.batch.series[0].histograms[0].h.count, 3.5);

        type Case = (fn(&mut v1::Histogram), &'static str);
        let cases: Vec<Case> = vec![
            (
                |h| h.positive_deltas.push(1),
                "spans need 3 buckets, have 4 buckets",
            ),
            (|h| h.positive_deltas[1] = -5, "negative observation count"),
            (|h| h.count = Some(Count::CountInt(10)), "10 observations"),
            (|h| h.schema = 9, "schema 9 is not supported"),
            (
                |h| h.custom_values = vec![1.0],
                "only allowed with schema -53",
            ),
            (|h| h.positive_spans[1].offset = -1, "is negative"),
        ];
        for (f, want) in cases {
            let mut h = int_hist();
            f(&mut h);
            let mut ts = series(&[("__name__", "h")]);
            ts.histograms.push(h);
            let e = bad(&v1_req(vec![ts]));
            assert!(
                e.contains(want) || (want == "10 observations" && e.contains("Count field is 10")),
                "{want}: {e}"
            );
        }
    }

    #[test]
    fn custom_bucket_histogram() {
        use v1::histogram::Count;
        let mut h = v1::Histogram {
            count: Some(Count::CountInt(3)),
            schema: CUSTOM_BUCKETS_SCHEMA,
            positive_spans: vec![v1::BucketSpan {
                offset: 0,
                length: 2,
            }],
            positive_deltas: vec![1, 1],
            custom_values: vec![0.5, 1.0],
            timestamp: NOW,
            ..Default::default()
        };
        let mk = |h: v1::Histogram| {
            let mut ts = series(&[("__name__", "h")]);
            ts.samples.clear();
            ts.histograms.push(h);
            v1_req(vec![ts])
        };
        let d = dec(&mk(h.clone())).unwrap();
        assert_eq!(
            d.batch.series[0].histograms[0].h.custom_values,
            vec![0.5, 1.0]
        );
        h.custom_values = vec![1.0, 0.5];
        assert!(bad(&mk(h)).contains("strictly increasing"));
    }

    fn v2_body(req: &v2::Request) -> Vec<u8> {
        body(req)
    }

    fn dec2(req: &v2::Request) -> Result<Decoded, Error> {
        decode(
            &v2_body(req),
            Some(CONTENT_TYPE_V2),
            Some("snappy"),
            &Limits::default(),
            NOW,
        )
    }

    fn v2_req() -> v2::Request {
        v2::Request {
            symbols: [
                "",
                "__name__",
                "http_requests_total",
                "job",
                "api",
                "help text",
                "seconds",
                "trace_id",
                "t1",
            ]
            .map(String::from)
            .to_vec(),
            timeseries: vec![v2::TimeSeries {
                labels_refs: vec![3, 4, 1, 2], // unsorted on purpose
                samples: vec![v2::Sample {
                    value: 3.0,
                    timestamp: NOW,
                    start_timestamp: NOW - 1000,
                }],
                exemplars: vec![
                    v2::Exemplar {
                        labels_refs: vec![7, 8],
                        value: 1.0,
                        timestamp: NOW,
                    },
                    v2::Exemplar {
                        labels_refs: vec![7, 8],
                        value: 1.0,
                        timestamp: 0,
                    },
                ],
                metadata: Some(v2::Metadata {
                    r#type: v2::metadata::MetricType::Counter as i32,
                    help_ref: 5,
                    unit_ref: 6,
                }),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn v2_happy_path() {
        let d = dec2(&v2_req()).unwrap();
        assert_eq!(d.version, RwVersion::V2);
        let s = &d.batch.series[0];
        assert_eq!(
            s.labels.to_string(),
            r#"{__name__="http_requests_total", job="api"}"#
        );
        assert_eq!(s.samples, vec![Sample { t: NOW, v: 3.0 }]);
        assert_eq!(s.exemplars.len(), 1);
        assert_eq!(d.dropped_exemplars, 1);
        assert_eq!(
            d.batch.metadata,
            vec![(
                "http_requests_total".to_string(),
                Metadata {
                    metric_type: MetricType::Counter,
                    help: "help text".into(),
                    unit: "seconds".into()
                }
            )]
        );
    }

    #[test]
    fn v2_histogram() {
        let mut r = v2_req();
        let ts = &mut r.timeseries[0];
        ts.samples.clear();
        ts.histograms.push(v2::Histogram {
            count: Some(v2::histogram::Count::CountInt(3)),
            positive_spans: vec![v2::BucketSpan {
                offset: 0,
                length: 2,
            }],
            positive_deltas: vec![1, 1],
            timestamp: NOW,
            start_timestamp: 1,
            ..Default::default()
        });
        let d = dec2(&r).unwrap();
        assert_eq!(
            d.batch.series[0].histograms[0].h.positive_buckets,
            vec![1.0, 2.0]
        );
    }

    #[test]
    fn v2_rejections() {
        let check = |f: fn(&mut v2::Request), want: &str| {
            let mut r = v2_req();
            f(&mut r);
            let e = dec2(&r).unwrap_err();
            assert_eq!(e.status(), 400);
            assert!(e.to_string().contains(want), "{want}: {e}");
        };
        check(
            |r| r.symbols[0] = "x".into(),
            "symbols[0] must be the empty string",
        );
        check(
            |r| r.timeseries[0].labels_refs[1] = 99,
            "label reference 99 out of range (symbols: 9)",
        );
        check(|r| r.timeseries[0].labels_refs.push(1), "odd count");
        check(
            |r| r.timeseries[0].metadata.as_mut().unwrap().help_ref = 50,
            "help reference 50",
        );
        check(
            |r| r.timeseries[0].exemplars[0].labels_refs[0] = 77,
            "exemplar label reference 77",
        );
        check(
            |r| {
                r.timeseries[0].histograms.push(v2::Histogram {
                    timestamp: NOW,
                    ..Default::default()
                })
            },
            "either samples or histograms",
        );
        // A v2 body sent with the v1 content type is garbage for the v1 schema or a different
        // message; it must never panic.
        let _ = decode(&v2_body(&v2_req()), None, None, &Limits::default(), NOW);
    }
}
