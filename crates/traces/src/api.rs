//! The Tempo HTTP API (native paths and under `/tempo`) and OTLP/HTTP trace ingest. Handlers get
//! the tenant from the tenancy middleware (`Extension<TenantSet>` for reads, `Extension<TenantId>`
//! for writes). Errors are plain text with the error's status, as Tempo answers.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use common::limits::Overrides;
use common::params::FormParams;
use common::ratelimit::RateLimiter;
use common::{TenantId, TenantSet};
use prost::Message;
use proto::otlp::tonic::collector::trace::v1::ExportTraceServiceResponse;
use proto::otlp::tonic::common::v1::{any_value, AnyValue, KeyValue};
use serde_json::json;

use crate::ingest;
use crate::model::{PushLimits, Span, Trace, TraceId, TraceScan, TraceSource, TraceWriter};
use crate::search::{self, SearchRequest};
use crate::tempo_json;
use crate::traceql;
use crate::Error;

/// Tempo version we report (`/api/status/buildinfo`); Grafana gates features on it.
pub const TEMPO_VERSION: &str = "2.8.0";

/// Receives every accepted span batch (the metrics generator).
pub trait SpanObserver: Send + Sync {
    /// Called after `spans` of `tenant` were written; `processors` are the tenant's enabled
    /// metrics-generator processors (never empty).
    fn observe(&self, tenant: &TenantId, spans: &[Span], processors: &[String]);
}

/// State shared by the traces handlers.
#[derive(Clone)]
pub struct TracesApi {
    /// Read side.
    pub source: Arc<dyn TraceSource>,
    /// Write side.
    pub writer: Arc<dyn TraceWriter>,
    /// Per-tenant limits.
    pub overrides: Overrides,
    /// Sees every accepted batch (span metrics, service graphs).
    pub observer: Option<Arc<dyn SpanObserver>>,
    bytes: Arc<RateLimiter>,
    spans: Arc<RateLimiter>,
}

impl TracesApi {
    /// Builds the API over a store.
    pub fn new(
        source: Arc<dyn TraceSource>,
        writer: Arc<dyn TraceWriter>,
        overrides: Overrides,
        observer: Option<Arc<dyn SpanObserver>>,
    ) -> Self {
        Self {
            source,
            writer,
            overrides,
            observer,
            bytes: Arc::new(RateLimiter::default()),
            spans: Arc::new(RateLimiter::default()),
        }
    }

    /// Validates, rate-limits and writes an OTLP request for `tenant` (OTLP/HTTP and gRPC share
    /// it); the response carries `partial_success` when spans were refused.
    pub async fn ingest(
        &self,
        tenant: &TenantId,
        req: proto::otlp::tonic::collector::trace::v1::ExportTraceServiceRequest,
    ) -> Result<ExportTraceServiceResponse, Error> {
        let limits = self.overrides.get(tenant);
        let f = ingest::flatten(req, limits.max_bytes_per_span);
        if !self.bytes.try_take(
            tenant,
            f.bytes as u64,
            limits.ingestion_rate_limit_bytes as f64,
            limits.ingestion_burst_size_bytes,
        ) {
            return Err(Error::Limit {
                status: 429,
                msg: format!(
                    "RATE_LIMITED: ingestion rate limit ({} bytes/s, ingestion_rate_limit_bytes) exceeded while adding {} bytes for user {tenant}",
                    limits.ingestion_rate_limit_bytes, f.bytes
                ),
            });
        }
        let rate = limits.ingestion_rate_limit_spans as f64;
        if !self.spans.try_take(
            tenant,
            f.spans.len() as u64,
            rate,
            limits.ingestion_rate_limit_spans,
        ) {
            return Err(Error::Limit {
                status: 429,
                msg: format!(
                    "RATE_LIMITED: ingestion rate limit ({} spans/s, ingestion_rate_limit_spans) exceeded while adding {} spans for user {tenant}",
                    limits.ingestion_rate_limit_spans,
                    f.spans.len()
                ),
            });
        }
        let mut rejected = f.rejected;
        let mut errors = f.errors;
        if !f.spans.is_empty() {
            let pl = PushLimits {
                max_bytes_per_trace: limits.max_bytes_per_trace,
            };
            let spans = f.spans;
            // Like Tempo's distributor, the generator sees the batch alongside the write (not
            // after it), so no copy of the spans is needed.
            if let Some(o) = &self.observer {
                if !limits.metrics_generator_processors.is_empty() {
                    o.observe(tenant, &spans, &limits.metrics_generator_processors);
                }
            }
            let r = self.writer.push(tenant, spans, &pl).await?;
            rejected += r.rejected;
            errors.extend(r.errors);
        }
        Ok(ingest::response(rejected, &errors))
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Routes that read (need `Extension<TenantSet>`); mount natively and under `/tempo`.
pub fn read_routes(api: TracesApi) -> Router {
    Router::new()
        .route("/api/traces/{id}", get(trace_v1))
        .route("/api/v2/traces/{id}", get(trace_v2))
        .route("/api/search", get(search_handler))
        .route("/api/search/tags", get(tags_v1))
        .route("/api/v2/search/tags", get(tags_v2))
        .route("/api/search/tag/{tag}/values", get(values_v1))
        .route("/api/v2/search/tag/{tag}/values", get(values_v2))
        .route("/api/metrics/query_range", get(metrics_range))
        .route("/api/metrics/query", get(metrics_instant))
        .with_state(api)
}

/// Routes that need no tenant.
pub fn public_routes() -> Router {
    Router::new()
        .route("/api/echo", get(|| async { "echo" }))
        .route("/api/status/buildinfo", get(buildinfo))
}

/// Routes that write (need `Extension<TenantId>`).
pub fn write_routes(api: TracesApi) -> Router {
    let cap = api.overrides.defaults().max_request_size_bytes;
    Router::new()
        .route("/v1/traces", post(otlp_traces))
        .route("/otlp/v1/traces", post(otlp_traces))
        .route("/api/v2/spans", post(zipkin_spans))
        .layer(DefaultBodyLimit::max(cap))
        .with_state(api)
}

/// Tempo's error response: plain text with the error's status.
pub fn tempo_error(e: &Error) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{e}\n"),
    )
        .into_response()
}

fn bad(msg: impl Into<String>) -> Error {
    Error::BadRequest(msg.into())
}

async fn buildinfo() -> Response {
    axum::Json(json!({
        "version": TEMPO_VERSION,
        "revision": env!("CARGO_PKG_VERSION"),
        "branch": "heimdall",
        "buildUser": "heimdall",
        "buildDate": "",
        "goVersion": ""
    }))
    .into_response()
}

// ---------------------------------------------------------------------------------------------
// Ingest.

async fn otlp_traces(
    Extension(tenant): Extension<TenantId>,
    State(api): State<TracesApi>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let hv = |n: header::HeaderName| h.get(n).and_then(|v| v.to_str().ok());
    let json_ct = hv(header::CONTENT_TYPE).is_some_and(|c| c.starts_with("application/json"));
    let max = api.overrides.get(&tenant).max_request_size_bytes;
    let result = match ingest::decode_http(
        &body,
        hv(header::CONTENT_TYPE),
        hv(header::CONTENT_ENCODING),
        max,
    ) {
        Ok(req) => api.ingest(&tenant, req).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(resp) => {
            if json_ct {
                let body = match resp.partial_success {
                    Some(p) => {
                        json!({"partialSuccess": {"rejectedSpans": p.rejected_spans.to_string(), "errorMessage": p.error_message}})
                    }
                    None => json!({}),
                };
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    body.to_string(),
                )
                    .into_response()
            } else {
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/x-protobuf")],
                    resp.encode_to_vec(),
                )
                    .into_response()
            }
        }
        Err(e) => {
            let status =
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let code = match status.as_u16() {
                429 => 8,
                400 | 413 | 415 => 3,
                _ => 13,
            };
            let message = format!("{e} (tenant {tenant})");
            if json_ct {
                (
                    status,
                    [(header::CONTENT_TYPE, "application/json")],
                    json!({"code": code, "message": message}).to_string(),
                )
                    .into_response()
            } else {
                (
                    status,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    message,
                )
                    .into_response()
            }
        }
    }
}

/// `POST /api/v2/spans`: Zipkin v2 JSON; 202 as Zipkin answers.
async fn zipkin_spans(
    Extension(tenant): Extension<TenantId>,
    State(api): State<TracesApi>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let hv = |n: header::HeaderName| h.get(n).and_then(|v| v.to_str().ok());
    let max = api.overrides.get(&tenant).max_request_size_bytes;
    let run = async {
        let raw = common::decompress::decompress_http(&body, hv(header::CONTENT_ENCODING), max)
            .map_err(|e| Error::Limit {
                status: e.status(),
                msg: e.to_string(),
            })?;
        let req = crate::zipkin::decode(&raw)?;
        api.ingest(&tenant, req).await
    };
    match run.await {
        Ok(resp) => match resp.partial_success {
            Some(p) => tempo_error(&Error::BadRequest(p.error_message)),
            None => StatusCode::ACCEPTED.into_response(),
        },
        Err(e) => tempo_error(&e),
    }
}

// ---------------------------------------------------------------------------------------------
// Trace by id.

/// Parses a hex trace id as Tempo does: any case, odd length allowed, left-padded to 16 bytes.
pub fn parse_trace_id(s: &str) -> Result<TraceId, Error> {
    let s = s.trim();
    if s.is_empty() || s.len() > 32 {
        return Err(bad(format!(
            "invalid trace id {s:?}: at most 32 hex digits"
        )));
    }
    let padded = format!("{s:0>32}");
    let bytes =
        hex::decode(&padded).map_err(|_| bad(format!("invalid trace id {s:?}: not hex")))?;
    let mut id = [0u8; 16];
    id.copy_from_slice(&bytes);
    Ok(id)
}

struct Params(FormParams);

impl Params {
    fn new(q: Option<&str>) -> Self {
        Params(FormParams::new(q, None, &[]))
    }
    fn get(&self, n: &str) -> Option<&str> {
        self.0.get(n).filter(|v| !v.is_empty())
    }
    /// A time parameter: unix seconds (Tempo's unit), or ns when it has more than 10 digits, or
    /// RFC 3339.
    fn time_ns(&self, n: &str) -> Result<Option<u64>, Error> {
        let Some(v) = self.get(n) else {
            return Ok(None);
        };
        if let Ok(i) = v.parse::<u64>() {
            return Ok(Some(if v.len() > 10 {
                i
            } else {
                i.saturating_mul(1_000_000_000)
            }));
        }
        if let Ok(f) = v.parse::<f64>() {
            return Ok(Some((f * 1e9) as u64));
        }
        chrono::DateTime::parse_from_rfc3339(v)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
            .map(|t| Some(t.max(0) as u64))
            .ok_or_else(|| bad(format!("invalid {n} {v:?}")))
    }
    fn usize(&self, n: &str, default: usize) -> Result<usize, Error> {
        match self.get(n) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| bad(format!("invalid {n} {v:?}"))),
        }
    }
    /// `start`/`end` (seconds); without them the last hour (Tempo searches recent data then).
    fn range(&self) -> Result<(u64, u64), Error> {
        let end = self
            .time_ns("end")?
            .unwrap_or_else(|| now_ns() + 60_000_000_000);
        let start = self
            .time_ns("start")?
            .unwrap_or(end.saturating_sub(3_600_000_000_000));
        if end < start {
            return Err(bad("invalid start and end: end must not be before start"));
        }
        // Spans are searched by overlap: a range ending at second `end` includes that second.
        Ok((start, end.saturating_add(999_999_999)))
    }
}

fn wants_protobuf(h: &HeaderMap) -> bool {
    h.get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/protobuf") || a.contains("application/x-protobuf"))
}

async fn find_trace(
    api: &TracesApi,
    t: &TenantSet,
    id: &str,
    q: Option<&str>,
) -> Result<Trace, Error> {
    let id = parse_trace_id(id)?;
    let p = Params::new(q);
    let start = p.time_ns("start")?.unwrap_or(0);
    let end = p
        .time_ns("end")?
        .map_or(u64::MAX, |e| e.saturating_add(999_999_999));
    api.source
        .trace_by_id(t, id, start, end)
        .await?
        .filter(|tr| !tr.spans.is_empty())
        .ok_or(Error::NotFound)
}

async fn trace_v1(
    Path(id): Path<String>,
    Extension(t): Extension<TenantSet>,
    State(api): State<TracesApi>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
) -> Response {
    match find_trace(&api, &t, &id, q.as_deref()).await {
        Ok(tr) => {
            let rs = tempo_json::resource_spans(&tr.spans);
            if wants_protobuf(&h) {
                let body = proto::tempo::Trace { resource_spans: rs }.encode_to_vec();
                ([(header::CONTENT_TYPE, "application/protobuf")], body).into_response()
            } else {
                axum::Json(tempo_json::trace_json(&rs)).into_response()
            }
        }
        Err(e) => tempo_error(&e),
    }
}

async fn trace_v2(
    Path(id): Path<String>,
    Extension(t): Extension<TenantSet>,
    State(api): State<TracesApi>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
) -> Response {
    match find_trace(&api, &t, &id, q.as_deref()).await {
        Ok(tr) => {
            let rs = tempo_json::resource_spans(&tr.spans);
            if wants_protobuf(&h) {
                let body = proto::tempo::TraceByIdResponse {
                    trace: Some(proto::tempo::Trace { resource_spans: rs }),
                    metrics: Some(proto::tempo::TraceByIdMetrics { inspected_bytes: 0 }),
                    status: 0,
                    message: String::new(),
                }
                .encode_to_vec();
                ([(header::CONTENT_TYPE, "application/protobuf")], body).into_response()
            } else {
                axum::Json(json!({"trace": tempo_json::trace_json(&rs), "metrics": {}}))
                    .into_response()
            }
        }
        Err(e) => tempo_error(&e),
    }
}

// ---------------------------------------------------------------------------------------------
// Search.

async fn search_handler(
    Extension(t): Extension<TenantSet>,
    State(api): State<TracesApi>,
    RawQuery(q): RawQuery,
) -> Response {
    let started = Instant::now();
    let p = Params::new(q.as_deref());
    let run = async {
        let (start, end) = p.range()?;
        let req = SearchRequest {
            q: p.get("q").map(str::to_string),
            tags: p.get("tags").map(str::to_string),
            min_duration_ns: p.get("minDuration").map(parse_go_duration).transpose()?,
            max_duration_ns: p.get("maxDuration").map(parse_go_duration).transpose()?,
            limit: p.usize("limit", 20)?.max(1),
            spss: p.usize("spss", 3)?.max(1),
            start_ns: start,
            end_ns: end,
        };
        let found = search::search(api.source.as_ref(), &t, &req).await?;
        Ok::<_, Error>((found, req.spss))
    };
    match run.await {
        Ok((r, spss)) => axum::Json(search::response_json(&r, spss, started)).into_response(),
        Err(e) => tempo_error(&e),
    }
}

/// Parses a Go duration (`100ms`, `1.5s`, `1h2m`) to ns.
pub fn parse_go_duration(s: &str) -> Result<u64, Error> {
    let err = || bad(format!("invalid duration {s:?}"));
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let v: f64 = rest[..n].parse().map_err(|_| err())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(err()),
        };
        total += v * mult;
        rest = &rest[u..];
    }
    Ok(total as u64)
}

// ---------------------------------------------------------------------------------------------
// TraceQL metrics.

/// Runs a TraceQL metrics query over `[start, end)` with `step`, collecting up to `exemplars`
/// exemplars.
async fn run_metrics(
    api: &TracesApi,
    t: &TenantSet,
    query: &traceql::Query,
    window: (u64, u64, u64),
    exemplars: usize,
) -> Result<(traceql::MetricsResult, Option<String>), Error> {
    let (start, end, step) = window;
    if query.metrics.is_none() {
        return Err(bad(
            "not a metrics query: end the query with a metrics function such as | rate()",
        ));
    }
    // compare() looks at every span of the outer query, so the store may not skip by hints
    // taken from its filter; the outer pipeline's hints still hold.
    let (service_names, span_names) = traceql::hints(query);
    let mut ev = traceql::MetricsEvaluator::new(query, start, end, step)?.with_exemplars(exemplars);
    let req = TraceScan {
        tenants: Some(t.clone()),
        start_ns: start,
        end_ns: end,
        service_names,
        span_names,
        ..Default::default()
    };
    api.source
        .scan(&req, &mut |_, tr| {
            ev.observe(tr);
            ControlFlow::Continue(())
        })
        .await?;
    let name = query.metrics.as_ref().map(|m| m.func.name().to_string());
    Ok((ev.finish(&query.second_stage), name))
}

/// The exemplar limit of a query range request, as Tempo's frontend settles it: a
/// `with(exemplars=N)` hint wins, `with(exemplars=false)` turns them off, otherwise the
/// `exemplars` parameter, defaulting to (and capped at) [`traceql::metrics::DEFAULT_EXEMPLARS`].
fn exemplar_limit(query: &traceql::Query, p: &Params) -> Result<usize, Error> {
    let max = traceql::metrics::DEFAULT_EXEMPLARS;
    let hint = query.hints.iter().rev().find(|h| h.name == "exemplars");
    let n = match hint.map(|h| &h.value) {
        Some(traceql::ast::Static::Int(n)) => (*n).max(0) as usize,
        Some(traceql::ast::Static::Bool(false)) => 0,
        Some(traceql::ast::Static::Bool(true)) => max,
        Some(other) => {
            return Err(bad(format!(
                "invalid exemplars hint {other}: want an integer or a boolean"
            )))
        }
        None => match p.usize("exemplars", 0)? {
            0 => max,
            n => n,
        },
    };
    Ok(n.min(max))
}

/// A metrics label value as Tempo writes it: strings, numbers and booleans typed, nil as the
/// string `nil`, durations, statuses and kinds as their TraceQL spelling.
fn metric_label_value(v: &traceql::ast::Static) -> AnyValue {
    use traceql::ast::Static;
    let value = match v {
        Static::Nil => any_value::Value::StringValue("nil".into()),
        Static::Str(s) => any_value::Value::StringValue(s.clone()),
        Static::Int(i) => any_value::Value::IntValue(*i),
        Static::Float(f) => any_value::Value::DoubleValue(*f),
        Static::Bool(b) => any_value::Value::BoolValue(*b),
        other => any_value::Value::StringValue(other.to_string()),
    };
    AnyValue { value: Some(value) }
}

fn metric_labels(labels: &[(String, traceql::ast::Static)]) -> Vec<KeyValue> {
    labels
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: Some(metric_label_value(v)),
            ..Default::default()
        })
        .collect()
}

/// Series labels as Tempo shows them (`__name__` = the function for ungrouped aggregates).
fn series_labels(s: &traceql::Series, name: &Option<String>) -> Vec<KeyValue> {
    let mut out = metric_labels(&s.labels);
    if out.is_empty() {
        if let Some(n) = name {
            out.push(KeyValue {
                key: "__name__".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(n.clone())),
                }),
                ..Default::default()
            });
        }
    }
    out
}

/// A float as protobuf JSON writes it (`NaN`, `Infinity` as strings).
fn json_f64(v: f64) -> serde_json::Value {
    if v.is_finite() {
        json!(v)
    } else if v.is_nan() {
        json!("NaN")
    } else if v > 0.0 {
        json!("Infinity")
    } else {
        json!("-Infinity")
    }
}

fn metrics_window(p: &Params) -> Result<(u64, u64), Error> {
    let end = p.time_ns("end")?.unwrap_or_else(now_ns);
    let since = p
        .get("since")
        .map(parse_go_duration)
        .transpose()?
        .unwrap_or(3_600_000_000_000);
    let start = p.time_ns("start")?.unwrap_or(end.saturating_sub(since));
    if end <= start {
        return Err(bad("invalid start and end: end must be after start"));
    }
    Ok((start, end))
}

async fn metrics_range(
    Extension(t): Extension<TenantSet>,
    State(api): State<TracesApi>,
    RawQuery(q): RawQuery,
) -> Response {
    let p = Params::new(q.as_deref());
    let run = async {
        let query = p.get("q").ok_or_else(|| bad("q is required"))?.to_string();
        let (start, end) = metrics_window(&p)?;
        let step = match p.get("step") {
            Some(s) => parse_go_duration(s).or_else(|_| {
                s.parse::<f64>()
                    .map(|f| (f * 1e9) as u64)
                    .map_err(|_| bad(format!("invalid step {s:?}")))
            })?,
            None => ((end - start) / 100).max(1_000_000_000),
        }
        .max(1);
        let parsed = traceql::parse(&query)?;
        let exemplars = exemplar_limit(&parsed, &p)?;
        let (r, name) = run_metrics(&api, &t, &parsed, (start, end, step), exemplars).await?;
        Ok::<_, Error>(json!({
            "series": r.series.iter().map(|s| {
                let mut v = json!({
                    "labels": tempo_json::key_values(&series_labels(s, &name)),
                    "samples": s.samples.iter().enumerate().filter_map(|(i, v)| v.map(|v| json!({
                        "timestampMs": ((r.start_ns + i as u64 * r.step_ns) / 1_000_000).to_string(),
                        "value": json_f64(v),
                    }))).collect::<Vec<_>>(),
                });
                if !s.exemplars.is_empty() {
                    v["exemplars"] = s.exemplars.iter().map(|e| json!({
                        "labels": tempo_json::key_values(&metric_labels(&e.labels)),
                        "value": json_f64(e.value),
                        "timestampMs": e.timestamp_ms.to_string(),
                    })).collect();
                }
                v
            }).collect::<Vec<_>>(),
            "metrics": {"inspectedBytes": "0"},
            "status": "COMPLETE",
        }))
    };
    match run.await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => tempo_error(&e),
    }
}

async fn metrics_instant(
    Extension(t): Extension<TenantSet>,
    State(api): State<TracesApi>,
    RawQuery(q): RawQuery,
) -> Response {
    let p = Params::new(q.as_deref());
    let run = async {
        let query = p.get("q").ok_or_else(|| bad("q is required"))?.to_string();
        let (start, end) = metrics_window(&p)?;
        let parsed = traceql::parse(&query)?;
        let (r, name) = run_metrics(&api, &t, &parsed, (start, end, end - start), 0).await?;
        Ok::<_, Error>(json!({
            "series": r.series.iter().filter_map(|s| {
                let v: Vec<f64> = s.samples.iter().flatten().copied().collect();
                (!v.is_empty()).then(|| json!({
                    "labels": tempo_json::key_values(&series_labels(s, &name)),
                    "value": v.iter().sum::<f64>(),
                }))
            }).collect::<Vec<_>>(),
            "metrics": {"inspectedBytes": "0"},
            "status": "COMPLETE",
        }))
    };
    match run.await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => tempo_error(&e),
    }
}

// ---------------------------------------------------------------------------------------------
// Tags.

const INTRINSICS: &[&str] = &[
    "duration",
    "event:name",
    "event:timeSinceStart",
    "instrumentation:name",
    "instrumentation:version",
    "kind",
    "name",
    "rootName",
    "rootServiceName",
    "span:duration",
    "span:id",
    "span:kind",
    "span:name",
    "span:parentID",
    "span:status",
    "span:statusMessage",
    "status",
    "statusMessage",
    "trace:duration",
    "trace:id",
    "trace:rootName",
    "trace:rootService",
    "traceDuration",
];

/// Attribute names seen per scope in the traces of a range.
async fn collect_tags(
    api: &TracesApi,
    t: &TenantSet,
    p: &Params,
) -> Result<BTreeMap<&'static str, BTreeSet<String>>, Error> {
    let (start, end) = p.range()?;
    let mut out: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    let req = TraceScan {
        tenants: Some(t.clone()),
        start_ns: start,
        end_ns: end,
        ..Default::default()
    };
    api.source
        .scan(&req, &mut |_, tr| {
            for s in &tr.spans {
                let e = out.entry("span").or_default();
                for kv in &s.attributes {
                    e.insert(kv.key.clone());
                }
                let e = out.entry("resource").or_default();
                for kv in &s.origin.resource.attributes {
                    e.insert(kv.key.clone());
                }
                for ev in &s.events {
                    let e = out.entry("event").or_default();
                    for kv in &ev.attributes {
                        e.insert(kv.key.clone());
                    }
                }
                for l in &s.links {
                    let e = out.entry("link").or_default();
                    for kv in &l.attributes {
                        e.insert(kv.key.clone());
                    }
                }
                let e = out.entry("instrumentation").or_default();
                for kv in &s.origin.scope.attributes {
                    e.insert(kv.key.clone());
                }
            }
            ControlFlow::Continue(())
        })
        .await?;
    Ok(out)
}

async fn tags_v1(
    Extension(t): Extension<TenantSet>,
    State(api): State<TracesApi>,
    RawQuery(q): RawQuery,
) -> Response {
    let p = Params::new(q.as_deref());
    match collect_tags(&api, &t, &p).await {
        Ok(m) => {
            let scope = p.get("scope");
            let names: BTreeSet<&String> = m
                .iter()
                .filter(|(s, _)| match scope {
                    Some(sc) if sc != "all" => *s == &sc,
                    _ => **s == "span" || **s == "resource",
                })
                .flat_map(|(_, v)| v.iter())
                .collect();
            axum::Json(json!({"tagNames": names, "metrics": {"inspectedBytes": "0"}}))
                .into_response()
        }
        Err(e) => tempo_error(&e),
    }
}

async fn tags_v2(
    Extension(t): Extension<TenantSet>,
    State(api): State<TracesApi>,
    RawQuery(q): RawQuery,
) -> Response {
    let p = Params::new(q.as_deref());
    match collect_tags(&api, &t, &p).await {
        Ok(m) => {
            let want = p.get("scope").filter(|s| *s != "all");
            let mut scopes = Vec::new();
            for name in ["resource", "span", "event", "link", "instrumentation"] {
                if want.is_some_and(|w| w != name) {
                    continue;
                }
                let tags: Vec<&String> =
                    m.get(name).map(|s| s.iter().collect()).unwrap_or_default();
                if !tags.is_empty() {
                    scopes.push(json!({"name": name, "tags": tags}));
                }
            }
            if want.is_none_or(|w| w == "intrinsic") {
                scopes.push(json!({"name": "intrinsic", "tags": INTRINSICS}));
            }
            axum::Json(json!({"scopes": scopes, "metrics": {"inspectedBytes": "0"}}))
                .into_response()
        }
        Err(e) => tempo_error(&e),
    }
}

/// A typed tag value (v2 API types).
fn typed(v: &AnyValue) -> Option<(String, &'static str)> {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => Some((s.clone(), "string")),
        Some(any_value::Value::IntValue(i)) => Some((i.to_string(), "int")),
        Some(any_value::Value::DoubleValue(d)) => Some((d.to_string(), "float")),
        Some(any_value::Value::BoolValue(b)) => Some((b.to_string(), "bool")),
        _ => None,
    }
}

fn find<'a>(kvs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    kvs.iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

/// Values of a tag: a scoped TraceQL identifier (`resource.service.name`, `span.x`, `.x`, or an
/// intrinsic such as `name`, `status`, `kind`) or, for v1, an unscoped attribute name.
async fn collect_values(
    api: &TracesApi,
    t: &TenantSet,
    p: &Params,
    tag: &str,
    v1: bool,
) -> Result<BTreeSet<(String, &'static str)>, Error> {
    let (start, end) = p.range()?;
    let mut out = BTreeSet::new();
    let (scope, name): (&str, &str) = if v1 {
        ("", tag)
    } else if let Some(n) = tag.strip_prefix("resource.") {
        ("resource", n)
    } else if let Some(n) = tag.strip_prefix("span.") {
        ("span", n)
    } else if let Some(n) = tag.strip_prefix('.') {
        ("", n)
    } else {
        ("intrinsic", tag)
    };
    let req = TraceScan {
        tenants: Some(t.clone()),
        start_ns: start,
        end_ns: end,
        ..Default::default()
    };
    api.source
        .scan(&req, &mut |_, tr| {
            for s in &tr.spans {
                match scope {
                    "intrinsic" => {
                        let v = match name {
                            "name" | "span:name" => Some((s.name.clone(), "string")),
                            "status" | "span:status" => Some((
                                ["unset", "ok", "error"]
                                    .get(s.status_code as usize)
                                    .unwrap_or(&"unset")
                                    .to_string(),
                                "keyword",
                            )),
                            "kind" | "span:kind" => Some((
                                [
                                    "unspecified",
                                    "internal",
                                    "server",
                                    "client",
                                    "producer",
                                    "consumer",
                                ]
                                .get(s.kind as usize)
                                .unwrap_or(&"unspecified")
                                .to_string(),
                                "keyword",
                            )),
                            "statusMessage" | "span:statusMessage" => {
                                (!s.status_message.is_empty())
                                    .then(|| (s.status_message.clone(), "string"))
                            }
                            "rootServiceName" | "trace:rootService" if s.is_root() => {
                                Some((s.origin.service_name().to_string(), "string"))
                            }
                            "rootName" | "trace:rootName" if s.is_root() => {
                                Some((s.name.clone(), "string"))
                            }
                            _ => None,
                        };
                        out.extend(v);
                    }
                    "resource" => {
                        out.extend(find(&s.origin.resource.attributes, name).and_then(typed))
                    }
                    "span" => out.extend(find(&s.attributes, name).and_then(typed)),
                    _ => {
                        out.extend(find(&s.attributes, name).and_then(typed));
                        out.extend(find(&s.origin.resource.attributes, name).and_then(typed));
                    }
                }
            }
            ControlFlow::Continue(())
        })
        .await?;
    out.retain(|(v, _)| !v.is_empty());
    Ok(out)
}

async fn values_v1(
    Path(tag): Path<String>,
    Extension(t): Extension<TenantSet>,
    State(api): State<TracesApi>,
    RawQuery(q): RawQuery,
) -> Response {
    let p = Params::new(q.as_deref());
    match collect_values(&api, &t, &p, &tag, true).await {
        Ok(v) => {
            let values: BTreeSet<&String> = v.iter().map(|(v, _)| v).collect();
            axum::Json(json!({"tagValues": values, "metrics": {"inspectedBytes": "0"}}))
                .into_response()
        }
        Err(e) => tempo_error(&e),
    }
}

async fn values_v2(
    Path(tag): Path<String>,
    Extension(t): Extension<TenantSet>,
    State(api): State<TracesApi>,
    RawQuery(q): RawQuery,
) -> Response {
    let p = Params::new(q.as_deref());
    match collect_values(&api, &t, &p, &tag, false).await {
        Ok(v) => axum::Json(json!({
            "tagValues": v.iter().map(|(v, ty)| json!({"type": ty, "value": v})).collect::<Vec<_>>(),
            "metrics": {"inspectedBytes": "0"}
        }))
        .into_response(),
        Err(e) => tempo_error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_and_durations() {
        let id = parse_trace_id("abc").unwrap();
        assert_eq!(id[15], 0xbc);
        assert_eq!(id[14], 0x0a);
        assert!(parse_trace_id("xyz").is_err());
        assert!(parse_trace_id(&"1".repeat(33)).is_err());
        assert_eq!(parse_go_duration("1.5s").unwrap(), 1_500_000_000);
        assert_eq!(parse_go_duration("1h2m").unwrap(), 3_720_000_000_000);
        assert!(parse_go_duration("5x").is_err());
    }

    /// An in-memory store over the TraceQL golden corpus.
    struct Mem(Vec<Trace>);

    #[async_trait::async_trait]
    impl TraceSource for Mem {
        async fn trace_by_id(
            &self,
            _: &TenantSet,
            id: TraceId,
            _: u64,
            _: u64,
        ) -> Result<Option<Trace>, Error> {
            Ok(self.0.iter().find(|t| t.trace_id == id).cloned())
        }
        async fn scan(
            &self,
            _: &TraceScan,
            sink: &mut (dyn for<'a, 'b> FnMut(&'a TenantId, &'b Trace) -> ControlFlow<()> + Send),
        ) -> Result<crate::model::ScanStats, Error> {
            let t = TenantId::new("t").unwrap();
            for tr in &self.0 {
                if sink(&t, tr).is_break() {
                    break;
                }
            }
            Ok(Default::default())
        }
    }

    #[async_trait::async_trait]
    impl TraceWriter for Mem {
        async fn push(
            &self,
            _: &TenantId,
            _: Vec<Span>,
            _: &PushLimits,
        ) -> Result<crate::model::PushResult, Error> {
            Ok(Default::default())
        }
    }

    async fn query_range(q: &str, extra: &str) -> serde_json::Value {
        let mem = Arc::new(Mem(crate::traceql::golden_tests::corpus()));
        let api = TracesApi::new(
            mem.clone(),
            mem,
            Overrides::new(Default::default(), None).unwrap(),
            None,
        );
        let base = crate::traceql::golden_tests::BASE / 1_000_000_000;
        let raw = format!(
            "q={}&start={}&end={}&step=10s{extra}",
            q.replace(' ', "%20")
                .replace('{', "%7B")
                .replace('}', "%7D")
                .replace('|', "%7C")
                .replace('=', "%3D")
                .replace('(', "%28")
                .replace(')', "%29")
                .replace(',', "%2C"),
            base,
            base + 60
        );
        let t = TenantSet::single(TenantId::new("t").unwrap());
        let resp = metrics_range(Extension(t), State(api), RawQuery(Some(raw))).await;
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    #[tokio::test]
    async fn query_range_exemplars_and_compare() {
        // Exemplars by default (one per trace, all seven traces), in Tempo's JSON shape.
        let v = query_range("{ } | count_over_time()", "").await;
        let s = &v["series"][0];
        assert_eq!(s["labels"][0]["key"], "__name__");
        let ex = s["exemplars"].as_array().unwrap();
        assert_eq!(ex.len(), 7, "{s}");
        assert_eq!(ex[0]["labels"][0]["key"], "trace:id");
        assert_eq!(
            ex[0]["labels"][0]["value"]["stringValue"],
            "f0000000000000000000000000000001"
        );
        assert_eq!(ex[0]["labels"][1]["key"], "span:id");
        assert!(ex[0]["timestampMs"].is_string());
        assert_eq!(ex[0]["value"], s["samples"][0]["value"]);
        // `with(exemplars=…)` and the parameter.
        let v = query_range("{ } | count_over_time() with(exemplars=2)", "").await;
        assert_eq!(v["series"][0]["exemplars"].as_array().unwrap().len(), 2);
        let v = query_range("{ } | count_over_time() with(exemplars=false)", "").await;
        assert!(v["series"][0].get("exemplars").is_none());
        // 6 exemplars: three 20s buckets of two; the third trace (10s) finds bucket 0 full.
        let v = query_range("{ } | count_over_time()", "&exemplars=6").await;
        assert_eq!(v["series"][0]["exemplars"].as_array().unwrap().len(), 5);
        // Nil group labels are written as "nil".
        let v = query_range("{ } | count_over_time() by (resource.service.name)", "").await;
        assert!(v["series"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["labels"][0]["value"]["stringValue"] == "nil"));

        // compare(): `__meta_type` first, then the attribute; totals carry "nil".
        let v = query_range("{ } | compare({ status = error })", "").await;
        let series = v["series"].as_array().unwrap();
        let find = |meta: &str, key: &str| {
            series
                .iter()
                .filter(|s| {
                    s["labels"][0]["key"] == "__meta_type"
                        && s["labels"][0]["value"]["stringValue"] == meta
                        && s["labels"][1]["key"] == key
                })
                .collect::<Vec<_>>()
        };
        let totals = find("selection_total", "status");
        assert_eq!(totals.len(), 1);
        assert_eq!(totals[0]["labels"][1]["value"]["stringValue"], "nil");
        let sel = find("selection", "status");
        assert_eq!(sel.len(), 1);
        assert_eq!(sel[0]["labels"][1]["value"]["stringValue"], "error");
        let total: f64 = sel[0]["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["value"].as_f64().unwrap())
            .sum();
        assert_eq!(total, 6.0);
        assert_eq!(find("baseline", "status").len(), 2); // ok and unset
        assert!(!find("baseline", "resource.service.name").is_empty());
    }
}
