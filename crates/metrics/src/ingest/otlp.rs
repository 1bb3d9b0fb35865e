//! OTLP metrics ingestion: OTLP/HTTP body decoding (protobuf or JSON, gzip/zstd/deflate, size
//! capped) and the OTel → Prometheus translation of the Prometheus/Mimir OTLP receivers
//! (`UnderscoreEscapingWithSuffixes`): normalised names with unit and `_total`/`_ratio` suffixes,
//! sanitised labels, `job`/`instance`/`target_info`, classic histograms for explicit buckets,
//! native histograms for exponential ones, summaries, stale markers and exemplars.
//!
//! Partial success: an invalid data point is rejected and counted ([`OtlpDecoded::rejected`]),
//! valid ones are kept, as OTLP's `partial_success` expects (Mimir answers 200 + partial success).
//!
//! Choices (upstream evidence in brackets):
//! - `le` and `quantile` values use Go's `strconv.FormatFloat(f, 'f', -1, 64)` [Prometheus
//!   `otlptranslator` `addHistogramDataPoints`/`addSummaryDataPoints`], i.e. shortest round-trip
//!   digits without exponent (`0.005`, `1`, `1000000`, `+Inf`), which Rust's `Display` also gives.
//! - Delta sums/histograms: `reject` answers `invalid temporality and type combination for metric
//!   "<name>"` [Prometheus `FromMetrics`]; unspecified temporality is always rejected. With
//!   `convert` the points are translated as usual and their series listed in
//!   [`OtlpDecoded::delta_series`]; a per-tenant [`DeltaAccumulator`] turns them into cumulative
//!   values before they are appended.
//! - Exponential histograms: zero threshold taken from the point, 1e-128 when unset; buckets are
//!   merged when `scale > 8`, points with `scale < -4` are rejected.
//! - Scope labels (`otel_scope_*`) are not added (no config switch yet).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use common::config::{MetricsConfig, OtlpDeltaPolicy};
use common::limits::Limits;
use common::{Label, Labels};
use prost::Message;
use proto::otlp::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use proto::otlp::tonic::common::v1::KeyValue;
use proto::otlp::tonic::metrics::v1 as om;

use super::decompress::decompress_http;
use super::validate::{check_not_in_future, validate_exemplar_labels, validate_series_labels};
use crate::model::{
    Exemplar, Histogram, HistogramSample, Metadata, MetricType, ResetHint, Sample, SeriesWrite,
    Span, WriteBatch, STALE_NAN_BITS,
};
use crate::Error;

/// The result of translating one OTLP export request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OtlpDecoded {
    /// Valid series, samples and metadata.
    pub batch: WriteBatch,
    /// Number of OTLP data points rejected (for `partial_success.rejected_data_points`).
    pub rejected: u64,
    /// Distinct reasons for rejections (at most [`MAX_ERRORS`]).
    pub errors: Vec<String>,
    /// Indices into `batch.series` of series whose values are deltas (only with
    /// `otlp_delta: convert`); run them through a [`DeltaAccumulator`] before appending.
    pub delta_series: Vec<usize>,
    /// Exemplars dropped because their labels were invalid (not counted as rejected points).
    pub dropped_exemplars: u64,
}

impl OtlpDecoded {
    /// The OTLP response: `partial_success` set only when something was rejected.
    pub fn response(&self) -> ExportMetricsServiceResponse {
        ExportMetricsServiceResponse {
            partial_success: (self.rejected > 0).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: i64::try_from(self.rejected).unwrap_or(i64::MAX),
                error_message: self.errors.join("; "),
            }),
        }
    }
}

/// Most distinct error messages kept per request.
pub const MAX_ERRORS: usize = 20;

/// Default zero threshold of native histograms converted from exponential ones.
pub const DEFAULT_ZERO_THRESHOLD: f64 = 1e-128;

/// Decodes an OTLP/HTTP metrics body (`application/x-protobuf` or `application/json`, any
/// supported `Content-Encoding`, decompressed size capped at `max_request_size_bytes`) and
/// translates it with the current clock.
pub fn decode_http(
    body: &[u8],
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    limits: &Limits,
    cfg: &MetricsConfig,
) -> Result<OtlpDecoded, Error> {
    let req = decode_request(body, content_type, content_encoding, limits)?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Ok(translate(req, cfg, limits, now_ms))
}

/// Whether an OTLP/HTTP body is protobuf or JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpEncoding {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json` (OTLP/JSON).
    Json,
}

/// Picks the body encoding from `Content-Type` (missing means protobuf); others are 415.
pub fn negotiate(content_type: Option<&str>) -> Result<OtlpEncoding, Error> {
    let ct = content_type.unwrap_or("");
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "" | "application/x-protobuf" | "application/protobuf" => Ok(OtlpEncoding::Protobuf),
        "application/json" => Ok(OtlpEncoding::Json),
        _ => Err(Error::UnsupportedMediaType(format!(
            "unsupported content type {ct:?}; use application/x-protobuf or application/json"
        ))),
    }
}

/// Decompresses and decodes an OTLP/HTTP metrics body without translating it.
pub fn decode_request(
    body: &[u8],
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    limits: &Limits,
) -> Result<ExportMetricsServiceRequest, Error> {
    let enc = negotiate(content_type)?;
    let raw = decompress_http(body, content_encoding, limits.max_request_size_bytes)?;
    match enc {
        OtlpEncoding::Protobuf => ExportMetricsServiceRequest::decode(&*raw)
            .map_err(|e| Error::BadData(format!("failed to decode OTLP protobuf request: {e}"))),
        OtlpEncoding::Json => proto::otlp_json::decode_metrics_request(&raw)
            .map_err(|e| Error::BadData(format!("failed to decode OTLP JSON request: {e}"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Names.

/// The Prometheus kind of an OTLP metric, as far as naming cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    /// A monotonic sum: gets `_total`.
    Counter,
    /// An OTLP gauge: gets `_ratio` when its unit is `1`.
    Gauge,
    /// Anything else (non-monotonic sums, histograms, summaries).
    Other,
}

fn main_unit(u: &str) -> &str {
    match u {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tebibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        "1" => "",
        other => other,
    }
}

fn per_unit(u: &str) -> &str {
    match u {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
}

/// Invalid characters become `_`, runs of `_` collapse, a leading `_` goes.
fn clean_up_unit(u: &str) -> String {
    let mut out = String::with_capacity(u.len());
    for c in u.chars() {
        let c = if c.is_ascii_alphanumeric() || c == ':' || c == '_' {
            c
        } else {
            '_'
        };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    out.strip_prefix('_').map(str::to_string).unwrap_or(out)
}

/// The Prometheus forms of the main and per units of a UCUM unit (`""` when absent or an
/// annotation like `{requests}`).
fn unit_parts(unit: &str) -> (String, String) {
    let mut it = unit.splitn(2, '/');
    let conv = |s: Option<&str>, map: fn(&str) -> &str| {
        let s = s.unwrap_or("").trim();
        if s.is_empty() || s.contains(['{', '}']) {
            String::new()
        } else {
            clean_up_unit(map(s))
        }
    };
    let main = conv(it.next(), main_unit);
    let per = conv(it.next(), per_unit);
    (main, per)
}

/// The Prometheus unit of an OTLP unit, for metadata (`s` → `seconds`, `By/s` → `bytes_per_second`).
pub fn prometheus_unit(unit: &str) -> String {
    let (main, per) = unit_parts(unit);
    match (main.is_empty(), per.is_empty()) {
        (_, true) => main,
        (true, false) => format!("per_{per}"),
        (false, false) => format!("{main}_per_{per}"),
    }
}

/// Normalises an OTLP metric name the way Prometheus' `UnderscoreEscapingWithSuffixes` does: split
/// on characters outside `[a-zA-Z0-9:]`, add the unit suffixes unless already present, `_total` for
/// counters, `_ratio` for unit-`1` gauges, and `_` before a leading digit.
pub fn normalize_name(name: &str, unit: &str, kind: NameKind) -> String {
    let mut tokens: Vec<String> = name
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == ':'))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    let (main, per) = unit_parts(unit);
    if !main.is_empty() && !tokens.contains(&main) {
        tokens.push(main);
    }
    if !per.is_empty() && !tokens.contains(&per) {
        tokens.push("per".into());
        tokens.push(per);
    }
    if kind == NameKind::Counter {
        tokens.retain(|t| t != "total");
        tokens.push("total".into());
    }
    if kind == NameKind::Gauge && unit == "1" {
        tokens.retain(|t| t != "ratio");
        tokens.push("ratio".into());
    }
    let mut out = tokens.join("_");
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Sanitises an attribute key into a label name: characters outside `[a-zA-Z0-9_]` become `_`,
/// a leading digit gets `key_`, a single leading `_` gets `key` (`label_name_underscore_sanitization`).
pub fn normalize_label(key: &str) -> String {
    if key.is_empty() {
        return String::new();
    }
    let s: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("key_{s}")
    } else if s.starts_with('_') && !s.starts_with("__") {
        format!("key{s}")
    } else {
        s
    }
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`, as Prometheus writes `le`/`quantile` values.
pub use crate::model::format_float;

// ---------------------------------------------------------------------------------------------
// Attribute values.

pub use proto::otlp_value::any_value_string;

// ---------------------------------------------------------------------------------------------
// Translation.

const SERVICE_NAME: &str = "service.name";
const SERVICE_NAMESPACE: &str = "service.namespace";
const SERVICE_INSTANCE_ID: &str = "service.instance.id";

/// What every series of one resource shares.
struct ResourceCtx {
    job: Option<String>,
    instance: Option<String>,
    /// Promoted resource attributes (original key, value).
    promoted: Vec<(String, String)>,
}

impl ResourceCtx {
    fn new(attrs: &[KeyValue], cfg: &MetricsConfig) -> Self {
        let get = |k: &str| {
            attrs
                .iter()
                .find(|kv| kv.key == k)
                .map(|kv| any_value_string(kv.value.as_ref()))
                .filter(|v| !v.is_empty())
        };
        let job = get(SERVICE_NAME).map(|name| match get(SERVICE_NAMESPACE) {
            Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
            _ => name,
        });
        let promoted = attrs
            .iter()
            .filter(|kv| {
                cfg.otlp_promote_resource_attributes
                    .iter()
                    .any(|p| p == &kv.key)
            })
            .map(|kv| (kv.key.clone(), any_value_string(kv.value.as_ref())))
            .collect();
        Self {
            job,
            instance: get(SERVICE_INSTANCE_ID),
            promoted,
        }
    }

    /// The labels of a series: point attributes (plus promoted resource attributes they do not
    /// override), sanitised, colliding names joined with `;` in original-key order, then
    /// job/instance, then `extra` (`le`/`quantile`) and the name.
    fn labels(&self, attrs: &[KeyValue], name: &str, extra: Option<(&str, String)>) -> Vec<Label> {
        let mut pairs: Vec<(&str, String)> = attrs
            .iter()
            .map(|kv| (kv.key.as_str(), any_value_string(kv.value.as_ref())))
            .collect();
        for (k, v) in &self.promoted {
            if !attrs.iter().any(|kv| &kv.key == k) {
                pairs.push((k.as_str(), v.clone()));
            }
        }
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        let mut m: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in pairs {
            let n = normalize_label(k);
            if n.is_empty() {
                continue;
            }
            match m.get_mut(&n) {
                Some(existing) => {
                    existing.push(';');
                    existing.push_str(&v);
                }
                None => {
                    m.insert(n, v);
                }
            }
        }
        if let Some(j) = &self.job {
            m.insert("job".into(), j.clone());
        }
        if let Some(i) = &self.instance {
            m.insert("instance".into(), i.clone());
        }
        if let Some((k, v)) = extra {
            m.insert(k.into(), v);
        }
        m.insert(common::labels::METRIC_NAME.into(), name.into());
        m.into_iter().map(|(n, v)| Label::new(n, v)).collect()
    }
}

enum Value {
    Float(f64),
    Hist(Histogram),
}

struct Pending {
    labels: Vec<Label>,
    value: Value,
    exemplars: Vec<Exemplar>,
}

impl Pending {
    /// A float series without exemplars (`_sum`, `_count`, quantiles).
    fn float(labels: Vec<Label>, v: f64) -> Self {
        Self {
            labels,
            value: Value::Float(v),
            exemplars: vec![],
        }
    }
}

struct Builder<'a> {
    limits: &'a Limits,
    now_ms: i64,
    out: OtlpDecoded,
    index: HashMap<Labels, usize>,
    is_delta: Vec<bool>,
    seen_meta: HashSet<String>,
    seen_err: HashSet<String>,
}

impl Builder<'_> {
    fn reject(&mut self, n: u64, msg: String) {
        self.out.rejected += n;
        if self.out.errors.len() < MAX_ERRORS && self.seen_err.insert(msg.clone()) {
            self.out.errors.push(msg);
        }
    }

    fn metadata(&mut self, name: &str, t: MetricType, help: &str, unit: &str) {
        if self.seen_meta.insert(name.to_string()) {
            self.out.batch.metadata.push((
                name.to_string(),
                Metadata {
                    metric_type: t,
                    help: help.to_string(),
                    unit: unit.to_string(),
                },
            ));
        }
    }

    /// [`Builder::commit`] for one OTLP data point: its timestamp when written, else 0 with the
    /// point counted as rejected.
    fn commit_point(&mut self, t: i64, pending: Vec<Pending>, delta: bool) -> i64 {
        match self.commit(t, pending, delta) {
            Ok(()) => t,
            Err(e) => {
                self.reject(1, e);
                0
            }
        }
    }

    /// Validates every series of one data point, then appends all of them or none.
    fn commit(&mut self, t: i64, pending: Vec<Pending>, delta: bool) -> Result<(), String> {
        let mut ok = Vec::with_capacity(pending.len());
        for p in pending {
            let labels = validate_series_labels(p.labels, self.limits)?;
            check_not_in_future(t, self.now_ms, self.limits, &labels)?;
            ok.push((labels, p.value, p.exemplars));
        }
        for (labels, value, exemplars) in ok {
            let i = match self.index.get(&labels) {
                Some(&i) => i,
                None => {
                    let i = self.out.batch.series.len();
                    self.index.insert(labels.clone(), i);
                    self.out.batch.series.push(SeriesWrite {
                        labels,
                        ..Default::default()
                    });
                    self.is_delta.push(false);
                    i
                }
            };
            self.is_delta[i] |= delta;
            let s = &mut self.out.batch.series[i];
            match value {
                Value::Float(v) => s.samples.push(Sample { t, v }),
                Value::Hist(h) => s.histograms.push(HistogramSample { t, h: Arc::new(h) }),
            }
            s.exemplars.extend(exemplars);
        }
        Ok(())
    }

    fn exemplars(&mut self, ex: &[om::Exemplar]) -> Vec<Exemplar> {
        let mut out = Vec::with_capacity(ex.len());
        for e in ex {
            let mut ls: Vec<Label> = e
                .filtered_attributes
                .iter()
                .map(|kv| {
                    Label::new(
                        normalize_label(&kv.key),
                        any_value_string(kv.value.as_ref()),
                    )
                })
                .collect();
            if e.trace_id.iter().any(|&b| b != 0) {
                ls.push(Label::new("trace_id", hex::encode(&e.trace_id)));
            }
            if e.span_id.iter().any(|&b| b != 0) {
                ls.push(Label::new("span_id", hex::encode(&e.span_id)));
            }
            let value = match e.value {
                Some(om::exemplar::Value::AsDouble(d)) => d,
                Some(om::exemplar::Value::AsInt(i)) => i as f64,
                None => 0.0,
            };
            match validate_exemplar_labels(ls) {
                Ok(labels) => out.push(Exemplar {
                    labels,
                    value,
                    t: ns_to_ms(e.time_unix_nano),
                }),
                Err(_) => self.out.dropped_exemplars += 1,
            }
        }
        out
    }
}

fn sort_dedup_last<T>(v: &mut Vec<T>, t: impl Fn(&T) -> i64) {
    if v.windows(2).all(|w| t(&w[0]) < t(&w[1])) {
        return;
    }
    v.reverse();
    // Stable sort of the reversed list puts the last-written point first among equals.
    v.sort_by_key(|x| t(x));
    v.dedup_by_key(|x| t(x));
}

fn ns_to_ms(ns: u64) -> i64 {
    (ns / 1_000_000) as i64
}

fn stale() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

fn no_recorded_value(flags: u32) -> bool {
    flags & om::DataPointFlags::NoRecordedValueMask as u32 != 0
}

/// Translates an OTLP export request into a [`WriteBatch`] (see the module docs for the rules).
/// Never fails as a whole: invalid points are counted in `rejected` with a reason in `errors`.
pub fn translate(
    req: ExportMetricsServiceRequest,
    cfg: &MetricsConfig,
    limits: &Limits,
    now_ms: i64,
) -> OtlpDecoded {
    let mut b = Builder {
        limits,
        now_ms,
        out: OtlpDecoded::default(),
        index: HashMap::new(),
        is_delta: Vec::new(),
        seen_meta: HashSet::new(),
        seen_err: HashSet::new(),
    };
    for rm in &req.resource_metrics {
        let attrs: &[KeyValue] = rm.resource.as_ref().map_or(&[], |r| &r.attributes);
        let ctx = ResourceCtx::new(attrs, cfg);
        let mut newest: i64 = 0;
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                newest = newest.max(translate_metric(&mut b, &ctx, m, cfg));
            }
        }
        target_info(&mut b, &ctx, attrs, newest);
    }
    // Points of one series may arrive out of order or twice (several resources/scopes, repeated
    // target_info): sort by time and keep the last value written for a timestamp.
    for s in &mut b.out.batch.series {
        sort_dedup_last(&mut s.samples, |x| x.t);
        sort_dedup_last(&mut s.histograms, |x| x.t);
    }
    b.out.delta_series = b
        .is_delta
        .iter()
        .enumerate()
        .filter_map(|(i, d)| d.then_some(i))
        .collect();
    b.out
}

/// `target_info` (value 1) with the non-identifying resource attributes, when the resource has any
/// and at least one of job/instance, at the newest timestamp of the resource's points.
fn target_info(b: &mut Builder<'_>, ctx: &ResourceCtx, attrs: &[KeyValue], newest_ms: i64) {
    if newest_ms == 0 || (ctx.job.is_none() && ctx.instance.is_none()) {
        return;
    }
    let rest: Vec<KeyValue> = attrs
        .iter()
        .filter(|kv| {
            ![SERVICE_NAME, SERVICE_NAMESPACE, SERVICE_INSTANCE_ID].contains(&kv.key.as_str())
        })
        .cloned()
        .collect();
    if rest.is_empty() {
        return;
    }
    let labels = ctx.labels(&rest, "target_info", None);
    match b.commit(newest_ms, vec![Pending::float(labels, 1.0)], false) {
        Ok(()) => b.metadata("target_info", MetricType::Gauge, "Target metadata", ""),
        // target_info is derived, not an OTLP data point: report it without counting a rejection.
        Err(e) => b.reject(0, e),
    }
}

/// Translates one metric; returns the newest timestamp (ms) among its points.
fn translate_metric(
    b: &mut Builder<'_>,
    ctx: &ResourceCtx,
    m: &om::Metric,
    cfg: &MetricsConfig,
) -> i64 {
    use om::metric::Data;
    let Some(data) = &m.data else {
        b.reject(
            0,
            format!("metric {:?} has no data (unsupported metric type)", m.name),
        );
        return 0;
    };
    let (kind, temporality, n_points) = match data {
        Data::Gauge(g) => (NameKind::Gauge, None, g.data_points.len()),
        Data::Sum(s) => (
            if s.is_monotonic {
                NameKind::Counter
            } else {
                NameKind::Other
            },
            Some(s.aggregation_temporality),
            s.data_points.len(),
        ),
        Data::Histogram(h) => (
            NameKind::Other,
            Some(h.aggregation_temporality),
            h.data_points.len(),
        ),
        Data::ExponentialHistogram(h) => (
            NameKind::Other,
            Some(h.aggregation_temporality),
            h.data_points.len(),
        ),
        Data::Summary(s) => (NameKind::Other, None, s.data_points.len()),
    };
    let delta = match temporality {
        None => false,
        Some(t) if t == om::AggregationTemporality::Cumulative as i32 => false,
        Some(t)
            if t == om::AggregationTemporality::Delta as i32
                && cfg.otlp_delta == OtlpDeltaPolicy::Convert =>
        {
            true
        }
        Some(_) => {
            b.reject(
                n_points as u64,
                format!(
                    "invalid temporality and type combination for metric {:?}",
                    m.name
                ),
            );
            return 0;
        }
    };
    let name = normalize_name(&m.name, &m.unit, kind);
    if name.is_empty() {
        b.reject(n_points as u64, format!("invalid metric name {:?}", m.name));
        return 0;
    }
    let unit = prometheus_unit(&m.unit);
    let mut newest = 0;
    match data {
        Data::Gauge(g) => {
            let unknown = m.metadata.iter().any(|kv| {
                kv.key == "prometheus.type" && any_value_string(kv.value.as_ref()) == "unknown"
            });
            let t = if unknown {
                MetricType::Unknown
            } else {
                MetricType::Gauge
            };
            newest = number_points(b, ctx, &name, &g.data_points, false, false);
            b.metadata(&name, t, &m.description, &unit);
        }
        Data::Sum(s) => {
            newest = number_points(b, ctx, &name, &s.data_points, delta, s.is_monotonic);
            let t = if s.is_monotonic {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            b.metadata(&name, t, &m.description, &unit);
        }
        Data::Histogram(h) => {
            for p in &h.data_points {
                newest = newest.max(explicit_histogram_point(b, ctx, &name, p, delta));
            }
            b.metadata(&name, MetricType::Histogram, &m.description, &unit);
        }
        Data::ExponentialHistogram(h) => {
            for p in &h.data_points {
                newest = newest.max(exponential_histogram_point(b, ctx, &name, p, delta));
            }
            b.metadata(&name, MetricType::Histogram, &m.description, &unit);
        }
        Data::Summary(s) => {
            for p in &s.data_points {
                newest = newest.max(summary_point(b, ctx, &name, p));
            }
            b.metadata(&name, MetricType::Summary, &m.description, &unit);
        }
    }
    newest
}

fn number_points(
    b: &mut Builder<'_>,
    ctx: &ResourceCtx,
    name: &str,
    points: &[om::NumberDataPoint],
    delta: bool,
    with_exemplars: bool,
) -> i64 {
    let mut newest = 0;
    for p in points {
        let t = ns_to_ms(p.time_unix_nano);
        let v = if no_recorded_value(p.flags) {
            stale()
        } else {
            match p.value {
                Some(om::number_data_point::Value::AsDouble(d)) => d,
                Some(om::number_data_point::Value::AsInt(i)) => i as f64,
                None => 0.0,
            }
        };
        let exemplars = if with_exemplars {
            b.exemplars(&p.exemplars)
        } else {
            vec![]
        };
        let pending = vec![Pending {
            labels: ctx.labels(&p.attributes, name, None),
            value: Value::Float(v),
            exemplars,
        }];
        match b.commit(t, pending, delta) {
            Ok(()) => newest = newest.max(t),
            Err(e) => b.reject(1, e),
        }
    }
    newest
}

fn explicit_histogram_point(
    b: &mut Builder<'_>,
    ctx: &ResourceCtx,
    name: &str,
    p: &om::HistogramDataPoint,
    delta: bool,
) -> i64 {
    let t = ns_to_ms(p.time_unix_nano);
    let stale_point = no_recorded_value(p.flags);
    let val = |v: f64| if stale_point { stale() } else { v };
    let mut exemplars = b.exemplars(&p.exemplars);
    exemplars.sort_by(|a, b| a.value.total_cmp(&b.value));
    let mut exemplars = exemplars.into_iter().peekable();
    let bucket_name = format!("{name}_bucket");
    let mut pending = Vec::with_capacity(p.explicit_bounds.len() + 3);
    let mut cumulative: u64 = 0;
    for (bound, count) in p.explicit_bounds.iter().zip(&p.bucket_counts) {
        cumulative = cumulative.saturating_add(*count);
        let mut ex = Vec::new();
        while let Some(e) = exemplars.next_if(|e| e.value <= *bound) {
            ex.push(e);
        }
        pending.push(Pending {
            labels: ctx.labels(
                &p.attributes,
                &bucket_name,
                Some(("le", format_float(*bound))),
            ),
            value: Value::Float(val(cumulative as f64)),
            exemplars: ex,
        });
    }
    pending.push(Pending {
        labels: ctx.labels(&p.attributes, &bucket_name, Some(("le", "+Inf".into()))),
        value: Value::Float(val(p.count as f64)),
        exemplars: exemplars.collect(),
    });
    if let Some(sum) = p.sum {
        pending.push(Pending::float(
            ctx.labels(&p.attributes, &format!("{name}_sum"), None),
            val(sum),
        ));
    }
    pending.push(Pending::float(
        ctx.labels(&p.attributes, &format!("{name}_count"), None),
        val(p.count as f64),
    ));
    b.commit_point(t, pending, delta)
}

fn summary_point(
    b: &mut Builder<'_>,
    ctx: &ResourceCtx,
    name: &str,
    p: &om::SummaryDataPoint,
) -> i64 {
    let t = ns_to_ms(p.time_unix_nano);
    let stale_point = no_recorded_value(p.flags);
    let val = |v: f64| if stale_point { stale() } else { v };
    let mut pending = Vec::with_capacity(p.quantile_values.len() + 2);
    pending.push(Pending::float(
        ctx.labels(&p.attributes, &format!("{name}_sum"), None),
        val(p.sum),
    ));
    pending.push(Pending::float(
        ctx.labels(&p.attributes, &format!("{name}_count"), None),
        val(p.count as f64),
    ));
    for q in &p.quantile_values {
        pending.push(Pending::float(
            ctx.labels(
                &p.attributes,
                name,
                Some(("quantile", format_float(q.quantile))),
            ),
            val(q.value),
        ));
    }
    b.commit_point(t, pending, false)
}

fn exponential_histogram_point(
    b: &mut Builder<'_>,
    ctx: &ResourceCtx,
    name: &str,
    p: &om::ExponentialHistogramDataPoint,
    delta: bool,
) -> i64 {
    let t = ns_to_ms(p.time_unix_nano);
    let h = match exponential_to_native(p) {
        Ok(h) => h,
        Err(e) => {
            b.reject(1, format!("{e} (metric {name:?})"));
            return 0;
        }
    };
    let exemplars = b.exemplars(&p.exemplars);
    let pending = vec![Pending {
        labels: ctx.labels(&p.attributes, name, None),
        value: Value::Hist(h),
        exemplars,
    }];
    b.commit_point(t, pending, delta)
}

/// Converts an OTLP exponential histogram point to a native histogram (float form): schema =
/// scale (buckets merged down to 8 when finer), bucket indices shifted by one: OTel bucket `i`
/// covers `(base^i, base^(i+1)]`, Prometheus bucket `i` covers `(base^(i-1), base^i]`. Min/max are
/// dropped; a NO_RECORDED_VALUE point becomes a histogram whose sum is the stale marker.
pub fn exponential_to_native(p: &om::ExponentialHistogramDataPoint) -> Result<Histogram, String> {
    if p.scale < -4 {
        return Err(format!(
            "cannot convert exponential to native histogram: scale must be >= -4, was {}",
            p.scale
        ));
    }
    let scale_down = (p.scale - 8).max(0) as u32;
    let zero_threshold = if p.zero_threshold > 0.0 {
        p.zero_threshold
    } else {
        DEFAULT_ZERO_THRESHOLD
    };
    if no_recorded_value(p.flags) {
        return Ok(Histogram {
            schema: p.scale.min(8),
            zero_threshold,
            sum: stale(),
            ..Default::default()
        });
    }
    let (positive_spans, positive_buckets) = convert_buckets(p.positive.as_ref(), scale_down);
    let (negative_spans, negative_buckets) = convert_buckets(p.negative.as_ref(), scale_down);
    Ok(Histogram {
        schema: p.scale.min(8),
        zero_threshold,
        zero_count: p.zero_count as f64,
        count: p.count as f64,
        sum: p.sum.unwrap_or(0.0),
        positive_spans,
        positive_buckets,
        negative_spans,
        negative_buckets,
        custom_values: vec![],
        reset_hint: ResetHint::Unknown,
    })
}

/// Arithmetic shift right that saturates instead of overflowing for `n >= 64` (scales come from
/// the wire and may be absurd).
fn ashr(x: i64, n: u32) -> i64 {
    if n >= 63 {
        if x < 0 {
            -1
        } else {
            0
        }
    } else {
        x >> n
    }
}

/// Maps OTel buckets to Prometheus spans and absolute counts: index `i` at OTel scale becomes
/// `(i >> scale_down) + 1`; empty buckets are left out, gaps of up to two buckets are filled with
/// zeros rather than opening a new span (as client_golang does).
fn convert_buckets(
    b: Option<&om::exponential_histogram_data_point::Buckets>,
    scale_down: u32,
) -> (Vec<Span>, Vec<f64>) {
    let Some(b) = b else {
        return (vec![], vec![]);
    };
    let mut merged: Vec<(i64, u64)> = Vec::new();
    for (i, &c) in b.bucket_counts.iter().enumerate() {
        let idx = ashr(i64::from(b.offset) + i as i64, scale_down) + 1;
        match merged.last_mut() {
            Some((last, n)) if *last == idx => *n = n.saturating_add(c),
            _ => merged.push((idx, c)),
        }
    }
    let mut spans: Vec<Span> = Vec::new();
    let mut counts = Vec::new();
    let mut prev: Option<i64> = None;
    for (idx, c) in merged.into_iter().filter(|&(_, c)| c > 0) {
        match prev {
            Some(p) if idx - p - 1 <= 2 => {
                counts.extend(std::iter::repeat_n(0.0, (idx - p - 1) as usize));
                if let Some(s) = spans.last_mut() {
                    s.length += (idx - p) as u32;
                }
            }
            Some(p) => spans.push(Span {
                offset: (idx - p - 1) as i32,
                length: 1,
            }),
            None => spans.push(Span {
                offset: idx as i32,
                length: 1,
            }),
        }
        counts.push(c as f64);
        prev = Some(idx);
    }
    (spans, counts)
}

// ---------------------------------------------------------------------------------------------
// Delta to cumulative.

/// Turns OTLP delta points into cumulative series (the `otlp_delta: convert` policy), one per
/// tenant, like Prometheus' `otlp-deltatocumulative`. State is a running total per series, keyed
/// by labels, bounded by `max_series`; series idle longer than a caller-chosen age are dropped by
/// [`DeltaAccumulator::gc`].
#[derive(Debug, Default)]
pub struct DeltaAccumulator {
    max_series: usize,
    floats: HashMap<Labels, (f64, i64)>,
    hists: HashMap<Labels, (Histogram, i64)>,
}

impl DeltaAccumulator {
    /// An accumulator tracking at most `max_series` series (0 = unbounded).
    pub fn new(max_series: usize) -> Self {
        Self {
            max_series,
            ..Default::default()
        }
    }

    /// Number of tracked series.
    pub fn len(&self) -> usize {
        self.floats.len() + self.hists.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn full(&self) -> bool {
        self.max_series > 0 && self.len() >= self.max_series
    }

    /// Replaces the values of the series at `delta_series` (from [`OtlpDecoded::delta_series`]) by
    /// running totals. Stale markers pass through. Points of new series beyond `max_series` are
    /// removed from the batch; returns how many points were removed that way.
    pub fn apply(&mut self, batch: &mut WriteBatch, delta_series: &[usize]) -> u64 {
        let mut dropped = 0;
        for &i in delta_series {
            let Some(s) = batch.series.get_mut(i) else {
                continue;
            };
            let known = self.floats.contains_key(&s.labels) || self.hists.contains_key(&s.labels);
            if !known && self.full() {
                dropped += (s.samples.len() + s.histograms.len()) as u64;
                s.samples.clear();
                s.histograms.clear();
                continue;
            }
            for x in &mut s.samples {
                if crate::model::is_stale_nan(x.v) {
                    continue;
                }
                let e = self.floats.entry(s.labels.clone()).or_insert((0.0, x.t));
                e.0 += x.v;
                e.1 = x.t;
                x.v = e.0;
            }
            for x in &mut s.histograms {
                if crate::model::is_stale_nan(x.h.sum) {
                    continue;
                }
                let acc = match self.hists.remove(&s.labels) {
                    Some((acc, _)) => add_histograms(&acc, &x.h),
                    None => (*x.h).clone(),
                };
                x.h = Arc::new(acc.clone());
                self.hists.insert(s.labels.clone(), (acc, x.t));
            }
        }
        dropped
    }

    /// Forgets series whose last point is older than `before_ms`.
    pub fn gc(&mut self, before_ms: i64) {
        self.floats.retain(|_, (_, t)| *t >= before_ms);
        self.hists.retain(|_, (_, t)| *t >= before_ms);
    }
}

/// `a + b` for exponential native histograms, at the coarser of the two schemas.
fn add_histograms(a: &Histogram, b: &Histogram) -> Histogram {
    let schema = a.schema.min(b.schema);
    let expand = |h: &Histogram, spans: &[Span], buckets: &[f64], out: &mut BTreeMap<i64, f64>| {
        let d = (h.schema - schema).max(0) as u32;
        let mut idx: i64 = 0;
        let mut k = 0;
        for s in spans {
            idx += i64::from(s.offset);
            for _ in 0..s.length {
                let v = buckets.get(k).copied().unwrap_or(0.0);
                // Upper-bound indexing: bucket i at a finer schema lands in ceil(i / 2^d).
                *out.entry(ashr(idx - 1, d) + 1).or_insert(0.0) += v;
                idx += 1;
                k += 1;
            }
        }
    };
    let mut pos = BTreeMap::new();
    let mut neg = BTreeMap::new();
    expand(a, &a.positive_spans, &a.positive_buckets, &mut pos);
    expand(b, &b.positive_spans, &b.positive_buckets, &mut pos);
    expand(a, &a.negative_spans, &a.negative_buckets, &mut neg);
    expand(b, &b.negative_spans, &b.negative_buckets, &mut neg);
    let to_spans = |m: BTreeMap<i64, f64>| {
        let mut spans: Vec<Span> = Vec::new();
        let mut counts = Vec::new();
        let mut prev: Option<i64> = None;
        for (idx, c) in m {
            match prev {
                Some(p) if idx == p + 1 => {
                    if let Some(s) = spans.last_mut() {
                        s.length += 1;
                    }
                }
                Some(p) => spans.push(Span {
                    offset: (idx - p - 1) as i32,
                    length: 1,
                }),
                None => spans.push(Span {
                    offset: idx as i32,
                    length: 1,
                }),
            }
            counts.push(c);
            prev = Some(idx);
        }
        (spans, counts)
    };
    let (positive_spans, positive_buckets) = to_spans(pos);
    let (negative_spans, negative_buckets) = to_spans(neg);
    Histogram {
        schema,
        zero_threshold: a.zero_threshold.max(b.zero_threshold),
        zero_count: a.zero_count + b.zero_count,
        count: a.count + b.count,
        sum: a.sum + b.sum,
        positive_spans,
        positive_buckets,
        negative_spans,
        negative_buckets,
        custom_values: vec![],
        reset_hint: ResetHint::No,
    }
}

#[cfg(test)]
mod tests {
    use proto::otlp::tonic::common::v1::{any_value, AnyValue, InstrumentationScope};
    use proto::otlp::tonic::metrics::v1::{
        exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
        summary_data_point, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
        HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
        SummaryDataPoint,
    };
    use proto::otlp::tonic::resource::v1::Resource;

    use super::*;

    const NOW_MS: i64 = 1_700_000_000_000;
    const T_NS: u64 = 1_700_000_000_000_000_000;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    fn req(resource: Vec<KeyValue>, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: resource,
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope::default()),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    fn metric(name: &str, unit: &str, data: Data) -> Metric {
        Metric {
            name: name.into(),
            description: "desc".into(),
            unit: unit.into(),
            data: Some(data),
            ..Default::default()
        }
    }

    fn ndp(v: f64, attrs: Vec<KeyValue>) -> NumberDataPoint {
        NumberDataPoint {
            attributes: attrs,
            time_unix_nano: T_NS,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        }
    }

    fn sum(
        points: Vec<NumberDataPoint>,
        temporality: om::AggregationTemporality,
        monotonic: bool,
    ) -> Data {
        Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: temporality as i32,
            is_monotonic: monotonic,
        })
    }

    fn run(r: ExportMetricsServiceRequest) -> OtlpDecoded {
        translate(r, &MetricsConfig::default(), &Limits::default(), NOW_MS)
    }

    fn find<'a>(d: &'a OtlpDecoded, sel: &str) -> &'a SeriesWrite {
        d.batch
            .series
            .iter()
            .find(|s| s.labels.to_string() == sel)
            .unwrap_or_else(|| {
                panic!(
                    "no series {sel} in {:#?}",
                    d.batch
                        .series
                        .iter()
                        .map(|s| s.labels.to_string())
                        .collect::<Vec<_>>()
                )
            })
    }

    #[test]
    fn name_normalisation() {
        use NameKind::*;
        let cases = [
            (
                "http.server.duration",
                "s",
                Other,
                "http_server_duration_seconds",
            ),
            ("requests.count", "1", Counter, "requests_count_total"),
            ("memory.usage", "By", Gauge, "memory_usage_bytes"),
            ("cpu.utilization", "1", Gauge, "cpu_utilization_ratio"),
            ("throughput", "By/s", Gauge, "throughput_bytes_per_second"),
            ("req", "{requests}/s", Counter, "req_per_second_total"),
            ("req", "{requests}", Counter, "req_total"),
            ("total.requests", "", Counter, "requests_total"),
            ("latency_seconds", "s", Other, "latency_seconds"),
            ("2xx-count", "", Gauge, "_2xx_count"),
            ("foo__bar", "m/mo", Other, "foo_bar_meters_per_month"),
            ("disk.io", "TiBy", Other, "disk_io_tebibytes"),
            ("temp", "Cel", Gauge, "temp_celsius"),
            ("x", "widgets", Gauge, "x_widgets"),
            ("a:b", "%", Gauge, "a:b_percent"),
        ];
        for (n, u, k, want) in cases {
            assert_eq!(normalize_name(n, u, k), want, "{n} {u}");
        }
        assert_eq!(prometheus_unit("By/s"), "bytes_per_second");
        assert_eq!(prometheus_unit("{req}"), "");
    }

    #[test]
    fn label_sanitisation() {
        assert_eq!(normalize_label("http.method"), "http_method");
        assert_eq!(normalize_label("2xx"), "key_2xx");
        assert_eq!(normalize_label("_private"), "key_private");
        assert_eq!(normalize_label("__reserved"), "__reserved");
        assert_eq!(normalize_label("ünï"), "key_n_");
        assert_eq!(format_float(0.005), "0.005");
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(1e6), "1000000");
        assert_eq!(format_float(2.5e-7), "0.00000025");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
    }

    #[test]
    fn counters_gauges_job_instance_target_info_and_collisions() {
        let res = vec![
            kv("service.name", "api"),
            kv("service.namespace", "shop"),
            kv("service.instance.id", "i-1"),
            kv("k8s.cluster.name", "prod"),
        ];
        let d = run(req(
            res,
            vec![
                metric(
                    "http.requests",
                    "1",
                    sum(
                        vec![ndp(
                            5.0,
                            vec![kv("http.method", "GET"), kv("http_method", "get")],
                        )],
                        om::AggregationTemporality::Cumulative,
                        true,
                    ),
                ),
                metric(
                    "queue.size",
                    "",
                    sum(
                        vec![ndp(3.0, vec![])],
                        om::AggregationTemporality::Cumulative,
                        false,
                    ),
                ),
                metric(
                    "cpu",
                    "1",
                    Data::Gauge(Gauge {
                        data_points: vec![ndp(0.5, vec![])],
                    }),
                ),
            ],
        ));
        assert_eq!(d.rejected, 0, "{:?}", d.errors);
        let c = find(
            &d,
            r#"{__name__="http_requests_total", http_method="GET;get", instance="i-1", job="shop/api"}"#,
        );
        assert_eq!(c.samples, vec![Sample { t: NOW_MS, v: 5.0 }]);
        find(
            &d,
            r#"{__name__="queue_size", instance="i-1", job="shop/api"}"#,
        );
        find(
            &d,
            r#"{__name__="cpu_ratio", instance="i-1", job="shop/api"}"#,
        );
        let ti = find(
            &d,
            r#"{__name__="target_info", instance="i-1", job="shop/api", k8s_cluster_name="prod"}"#,
        );
        assert_eq!(ti.samples[0].v, 1.0);
        let meta: HashMap<_, _> = d.batch.metadata.iter().cloned().collect();
        assert_eq!(meta["http_requests_total"].metric_type, MetricType::Counter);
        assert_eq!(meta["http_requests_total"].help, "desc");
        assert_eq!(meta["queue_size"].metric_type, MetricType::Gauge);
        assert_eq!(meta["target_info"].help, "Target metadata");
    }

    #[test]
    fn no_target_info_without_extra_attributes_and_promotion() {
        let d = run(req(
            vec![kv("service.name", "api")],
            vec![metric(
                "g",
                "",
                Data::Gauge(Gauge {
                    data_points: vec![ndp(1.0, vec![])],
                }),
            )],
        ));
        assert_eq!(d.batch.series.len(), 1);
        find(&d, r#"{__name__="g", job="api"}"#);

        let cfg = MetricsConfig {
            otlp_promote_resource_attributes: vec!["k8s.namespace.name".into()],
            ..Default::default()
        };
        let r = req(
            vec![kv("k8s.namespace.name", "ns1"), kv("host.name", "h")],
            vec![metric(
                "g",
                "",
                Data::Gauge(Gauge {
                    data_points: vec![ndp(1.0, vec![])],
                }),
            )],
        );
        let d = translate(r, &cfg, &Limits::default(), NOW_MS);
        // No job/instance: no target_info.
        assert_eq!(d.batch.series.len(), 1);
        find(&d, r#"{__name__="g", k8s_namespace_name="ns1"}"#);
    }

    #[test]
    fn explicit_histogram_is_classic_with_cumulative_buckets() {
        let p = HistogramDataPoint {
            time_unix_nano: T_NS,
            count: 10,
            sum: Some(12.5),
            bucket_counts: vec![1, 2, 3, 4],
            explicit_bounds: vec![0.005, 1.0, 2.5],
            exemplars: vec![om::Exemplar {
                time_unix_nano: T_NS,
                value: Some(om::exemplar::Value::AsDouble(0.7)),
                trace_id: vec![0xab; 16],
                span_id: vec![0x01; 8],
                ..Default::default()
            }],
            ..Default::default()
        };
        let d = run(req(
            vec![],
            vec![metric(
                "http.server.duration",
                "s",
                Data::Histogram(om::Histogram {
                    data_points: vec![p],
                    aggregation_temporality: om::AggregationTemporality::Cumulative as i32,
                }),
            )],
        ));
        let b = |le: &str| {
            find(
                &d,
                &format!(r#"{{__name__="http_server_duration_seconds_bucket", le="{le}"}}"#),
            )
            .samples[0]
                .v
        };
        assert_eq!(
            (b("0.005"), b("1"), b("2.5"), b("+Inf")),
            (1.0, 3.0, 6.0, 10.0)
        );
        assert_eq!(
            find(&d, r#"{__name__="http_server_duration_seconds_sum"}"#).samples[0].v,
            12.5
        );
        assert_eq!(
            find(&d, r#"{__name__="http_server_duration_seconds_count"}"#).samples[0].v,
            10.0
        );
        let ex = &find(
            &d,
            r#"{__name__="http_server_duration_seconds_bucket", le="1"}"#,
        )
        .exemplars;
        assert_eq!(ex.len(), 1);
        assert_eq!(
            ex[0].labels.get("trace_id"),
            Some("abababababababababababababababab")
        );
        assert_eq!(ex[0].labels.get("span_id"), Some("0101010101010101"));
        assert_eq!(ex[0].t, NOW_MS);
        assert_eq!(d.batch.metadata[0].1.metric_type, MetricType::Histogram);
        assert_eq!(d.batch.metadata[0].1.unit, "seconds");
    }

    fn exp_point(scale: i32, offset: i32, counts: Vec<u64>) -> ExponentialHistogramDataPoint {
        let total: u64 = counts.iter().sum();
        ExponentialHistogramDataPoint {
            time_unix_nano: T_NS,
            count: total + 2,
            sum: Some(3.0),
            scale,
            zero_count: 2,
            positive: Some(Buckets {
                offset,
                bucket_counts: counts,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn exponential_histogram_shifts_and_downscales() {
        let h = exponential_to_native(&exp_point(3, -1, vec![1, 0, 2, 0, 0, 0, 4])).unwrap();
        assert_eq!(h.schema, 3);
        assert_eq!(h.zero_threshold, DEFAULT_ZERO_THRESHOLD);
        // OTel indices -1, 1, 5 → Prometheus 0, 2, 6: gap of one filled, gap of three a new span.
        assert_eq!(
            h.positive_spans,
            vec![
                Span {
                    offset: 0,
                    length: 3
                },
                Span {
                    offset: 3,
                    length: 1
                }
            ]
        );
        assert_eq!(h.positive_buckets, vec![1.0, 0.0, 2.0, 4.0]);
        assert_eq!((h.count, h.zero_count, h.sum), (9.0, 2.0, 3.0));

        // scale 10 → schema 8: OTel indices 0..4 merge by 4 into Prometheus index 1.
        let h = exponential_to_native(&exp_point(10, 0, vec![1, 1, 1, 1, 5])).unwrap();
        assert_eq!(h.schema, 8);
        assert_eq!(
            h.positive_spans,
            vec![Span {
                offset: 1,
                length: 2
            }]
        );
        assert_eq!(h.positive_buckets, vec![4.0, 5.0]);

        assert!(exponential_to_native(&exp_point(-5, 0, vec![1]))
            .unwrap_err()
            .contains("scale must be >= -4"));
        let mut p = exp_point(0, 0, vec![1]);
        p.zero_threshold = 0.5;
        assert_eq!(exponential_to_native(&p).unwrap().zero_threshold, 0.5);
    }

    #[test]
    fn exponential_histogram_series_and_scale_rejection() {
        let d = run(req(
            vec![],
            vec![metric(
                "lat",
                "ms",
                Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![exp_point(0, 0, vec![1]), exp_point(-9, 0, vec![1])],
                    aggregation_temporality: om::AggregationTemporality::Cumulative as i32,
                }),
            )],
        ));
        assert_eq!(d.rejected, 1);
        assert!(
            d.errors[0].contains("scale must be >= -4"),
            "{:?}",
            d.errors
        );
        let s = find(&d, r#"{__name__="lat_milliseconds"}"#);
        assert_eq!(s.histograms[0].h.positive_buckets, vec![1.0]);
    }

    #[test]
    fn summary_and_stale_markers() {
        let p = SummaryDataPoint {
            time_unix_nano: T_NS,
            count: 4,
            sum: 8.0,
            quantile_values: vec![
                summary_data_point::ValueAtQuantile {
                    quantile: 0.5,
                    value: 1.0,
                },
                summary_data_point::ValueAtQuantile {
                    quantile: 0.99,
                    value: 3.0,
                },
            ],
            ..Default::default()
        };
        let mut stale_pt = ndp(9.0, vec![]);
        stale_pt.flags = 1;
        let d = run(req(
            vec![],
            vec![
                metric(
                    "rpc",
                    "",
                    Data::Summary(Summary {
                        data_points: vec![p],
                    }),
                ),
                metric(
                    "g",
                    "",
                    Data::Gauge(Gauge {
                        data_points: vec![stale_pt],
                    }),
                ),
            ],
        ));
        assert_eq!(
            find(&d, r#"{__name__="rpc", quantile="0.99"}"#).samples[0].v,
            3.0
        );
        assert_eq!(find(&d, r#"{__name__="rpc_sum"}"#).samples[0].v, 8.0);
        assert_eq!(find(&d, r#"{__name__="rpc_count"}"#).samples[0].v, 4.0);
        assert_eq!(
            find(&d, r#"{__name__="g"}"#).samples[0].v.to_bits(),
            STALE_NAN_BITS
        );
    }

    #[test]
    fn delta_rejected_by_default_and_accumulated_with_convert() {
        let mk = || {
            req(
                vec![],
                vec![
                    metric(
                        "hits",
                        "",
                        sum(
                            vec![ndp(2.0, vec![])],
                            om::AggregationTemporality::Delta,
                            true,
                        ),
                    ),
                    metric(
                        "ok",
                        "",
                        Data::Gauge(Gauge {
                            data_points: vec![ndp(1.0, vec![])],
                        }),
                    ),
                    metric(
                        "unspec",
                        "",
                        sum(
                            vec![ndp(1.0, vec![])],
                            om::AggregationTemporality::Unspecified,
                            true,
                        ),
                    ),
                ],
            )
        };
        let d = run(mk());
        assert_eq!(d.rejected, 2);
        assert_eq!(
            d.errors[0],
            r#"invalid temporality and type combination for metric "hits""#
        );
        assert_eq!(d.batch.series.len(), 1);
        let resp = d.response().partial_success.unwrap();
        assert_eq!(resp.rejected_data_points, 2);

        let cfg = MetricsConfig {
            otlp_delta: OtlpDeltaPolicy::Convert,
            ..Default::default()
        };
        let mut acc = DeltaAccumulator::new(10);
        let mut total = 0.0;
        for _ in 0..3 {
            let mut d = translate(mk(), &cfg, &Limits::default(), NOW_MS);
            assert_eq!(d.rejected, 1); // unspecified temporality stays invalid
            assert_eq!(d.delta_series.len(), 1);
            acc.apply(&mut d.batch, &d.delta_series);
            total = find(&d, r#"{__name__="hits_total"}"#).samples[0].v;
        }
        assert_eq!(total, 6.0);
        acc.gc(NOW_MS + 1);
        assert!(acc.is_empty());
    }

    #[test]
    fn delta_exponential_histograms_add_across_schemas() {
        let cfg = MetricsConfig {
            otlp_delta: OtlpDeltaPolicy::Convert,
            ..Default::default()
        };
        let mut acc = DeltaAccumulator::new(0);
        let mut last = None;
        for p in [exp_point(1, 0, vec![1, 1]), exp_point(0, 0, vec![3])] {
            let r = req(
                vec![],
                vec![metric(
                    "lat",
                    "",
                    Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: vec![p],
                        aggregation_temporality: om::AggregationTemporality::Delta as i32,
                    }),
                )],
            );
            let mut d = translate(r, &cfg, &Limits::default(), NOW_MS);
            acc.apply(&mut d.batch, &d.delta_series);
            last = Some(d.batch.series[0].histograms[0].h.clone());
        }
        let h = last.unwrap();
        assert_eq!(h.schema, 0);
        // schema 1 buckets 1,2 (upper bounds 2^0.5, 2^1) fold into schema 0 bucket 1.
        assert_eq!(
            h.positive_spans,
            vec![Span {
                offset: 1,
                length: 1
            }]
        );
        assert_eq!(h.positive_buckets, vec![5.0]);
        assert_eq!((h.count, h.zero_count, h.sum), (9.0, 4.0, 6.0));
    }

    #[test]
    fn points_sorted_and_duplicates_keep_the_last() {
        let mut a = ndp(1.0, vec![]);
        a.time_unix_nano = T_NS + 2_000_000;
        let b = ndp(2.0, vec![]);
        let c = ndp(3.0, vec![]);
        let d = run(req(
            vec![],
            vec![metric(
                "g",
                "",
                Data::Gauge(Gauge {
                    data_points: vec![a, b, c],
                }),
            )],
        ));
        assert_eq!(
            find(&d, r#"{__name__="g"}"#).samples,
            vec![
                Sample { t: NOW_MS, v: 3.0 },
                Sample {
                    t: NOW_MS + 2,
                    v: 1.0
                }
            ]
        );
    }

    #[test]
    fn invalid_points_are_rejected_and_valid_kept() {
        let mut future = ndp(1.0, vec![]);
        future.time_unix_nano = T_NS + 3_600_000_000_000;
        let long = "v".repeat(3000);
        let d = run(req(
            vec![],
            vec![metric(
                "g",
                "",
                Data::Gauge(Gauge {
                    data_points: vec![ndp(1.0, vec![]), future, ndp(2.0, vec![kv("a", &long)])],
                }),
            )],
        ));
        assert_eq!(d.rejected, 2);
        assert_eq!(d.batch.sample_count(), 1);
        assert!(
            d.errors.iter().any(|e| e.contains("too far in the future")),
            "{:?}",
            d.errors
        );
        assert!(d
            .errors
            .iter()
            .any(|e| e.contains("label value length exceeds the limit")));
    }

    const JSON: &str = r#"{
      "resourceMetrics": [{
        "resource": {"attributes": [
          {"key": "service.name", "value": {"stringValue": "checkout"}},
          {"key": "host.cpus", "value": {"intValue": "8"}},
          {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"boolValue": true}]}}}
        ], "droppedAttributesCount": 0},
        "someUnknownField": {"x": 1},
        "scopeMetrics": [{
          "scope": {"name": "my.lib", "version": "1.0"},
          "metrics": [
            {"name": "orders", "unit": "{order}", "description": "Orders placed",
             "sum": {"aggregationTemporality": 2, "isMonotonic": true, "dataPoints": [
               {"asInt": "42", "timeUnixNano": "1700000000000000000", "startTimeUnixNano": "1690000000000000000",
                "attributes": [{"key": "region", "value": {"stringValue": "eu"}}],
                "exemplars": [{"asDouble": 1.5, "timeUnixNano": "1700000000000000000",
                  "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174"}]}
             ]}},
            {"name": "temp", "unit": "Cel",
             "gauge": {"dataPoints": [{"asDouble": 21.5, "timeUnixNano": 1700000000000000000}]}},
            {"name": "lat", "unit": "s",
             "histogram": {"aggregationTemporality": 2, "dataPoints": [
               {"timeUnixNano": "1700000000000000000", "count": "3", "sum": 0.6,
                "bucketCounts": ["1", "2", "0"], "explicitBounds": [0.1, 0.5]}]}}
          ]
        }]
      }]
    }"#;

    #[test]
    fn otlp_json_body() {
        let d = decode_request(
            JSON.as_bytes(),
            Some("application/json"),
            None,
            &Limits::default(),
        )
        .unwrap();
        let d = translate(d, &MetricsConfig::default(), &Limits::default(), NOW_MS);
        assert_eq!(d.rejected, 0, "{:?}", d.errors);
        let s = find(
            &d,
            r#"{__name__="orders_total", job="checkout", region="eu"}"#,
        );
        assert_eq!(s.samples, vec![Sample { t: NOW_MS, v: 42.0 }]);
        assert_eq!(
            s.exemplars[0].labels.get("trace_id"),
            Some("5b8efff798038103d269b633813fc60c")
        );
        assert_eq!(
            find(&d, r#"{__name__="temp_celsius", job="checkout"}"#).samples[0].v,
            21.5
        );
        assert_eq!(
            find(
                &d,
                r#"{__name__="lat_seconds_bucket", job="checkout", le="0.5"}"#
            )
            .samples[0]
                .v,
            3.0
        );
        find(
            &d,
            r#"{__name__="target_info", host_cpus="8", job="checkout", tags="[\"a\",true]"}"#,
        );
    }

    #[test]
    fn http_decoding_and_encodings() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(JSON.as_bytes()).unwrap();
        let gz = e.finish().unwrap();
        let cfg = MetricsConfig::default();
        let d = decode_http(
            &gz,
            Some("application/json; charset=utf-8"),
            Some("gzip"),
            &Limits::default(),
            &cfg,
        );
        // The clock is "now", far after 2023: points are accepted, not in the future.
        assert_eq!(d.unwrap().rejected, 0);
        let r = req(
            vec![],
            vec![metric(
                "g",
                "",
                Data::Gauge(Gauge {
                    data_points: vec![ndp(1.0, vec![])],
                }),
            )],
        );
        let pb = zstd::encode_all(r.encode_to_vec().as_slice(), 1).unwrap();
        let d = decode_http(
            &pb,
            Some("application/x-protobuf"),
            Some("zstd"),
            &Limits::default(),
            &cfg,
        )
        .unwrap();
        assert_eq!(d.batch.sample_count(), 1);
        let e = decode_http(
            &pb,
            Some("text/plain"),
            Some("zstd"),
            &Limits::default(),
            &cfg,
        )
        .unwrap_err();
        assert_eq!(e.status(), 415);
        let e = decode_http(
            b"{",
            Some("application/json"),
            None,
            &Limits::default(),
            &cfg,
        )
        .unwrap_err();
        assert_eq!(e.status(), 400);
        let small = Limits {
            max_request_size_bytes: 64,
            ..Default::default()
        };
        assert_eq!(
            decode_http(&gz, Some("application/json"), Some("gzip"), &small, &cfg)
                .unwrap_err()
                .status(),
            413
        );
    }
}
