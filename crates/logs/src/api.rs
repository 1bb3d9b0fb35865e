//! The Loki HTTP API: push (protobuf/JSON), OTLP logs over HTTP, and the query endpoints Grafana
//! and Logs Drilldown call. Handlers get the tenant from the tenancy middleware
//! (`Extension<TenantSet>` for reads, `Extension<TenantId>` for writes). Errors are plain-text
//! bodies, as Loki answers; the status comes from [`Error::status`] in [`loki_error`] only.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use common::gofmt::format_f;
use common::limits::Overrides;
use common::params::FormParams;
use common::ratelimit::RateLimiter;
use common::{Labels, Matcher, TenantId, TenantSet};
use serde_json::{json, Map, Value};

use crate::ingest::{self, otlp};
use crate::logql::ast::{Expr, Grouping, LogExpr, LogRange, MetricExpr, RangeOp, VectorOp};
use crate::logql::engine::{self, Direction, QueryParams, QueryResult, QueryStats};
use crate::logql::{json as jsonx, logfmt, parser};
use crate::model::{LogSource, LogWriter, PushLimits, StreamPush};
use crate::Error;

/// Loki version we report (`status/buildinfo`); Grafana and Drilldown gate features on it.
pub const LOKI_VERSION: &str = "3.5.0";

/// State shared by the logs handlers.
#[derive(Clone)]
pub struct LogsApi {
    /// Read side.
    pub source: Arc<dyn LogSource>,
    /// Write side.
    pub writer: Arc<dyn LogWriter>,
    /// Per-tenant limits.
    pub overrides: Overrides,
    limiter: Arc<RateLimiter>,
}

impl LogsApi {
    /// Builds the API over a store.
    pub fn new(
        source: Arc<dyn LogSource>,
        writer: Arc<dyn LogWriter>,
        overrides: Overrides,
    ) -> Self {
        Self {
            source,
            writer,
            overrides,
            limiter: Arc::new(RateLimiter::default()),
        }
    }

    /// Validates and writes decoded streams for `tenant` (push, OTLP/HTTP and OTLP/gRPC share
    /// it). Returns Loki's 400 message when some entries were refused.
    pub async fn ingest(
        &self,
        tenant: &TenantId,
        raw: Vec<ingest::RawStream>,
    ) -> Result<Option<String>, Error> {
        let limits = self.overrides.get(tenant);
        let now = now_ns();
        let v = ingest::validate(raw, &limits, now)?;
        let rate = limits.ingestion_rate_mb * 1e6;
        let burst = (limits.ingestion_burst_size_mb * 1e6) as u64;
        if !self.limiter.try_take(tenant, v.bytes as u64, rate, burst) {
            return Err(Error::Limit {
                status: 429,
                msg: format!(
                    "Ingestion rate limit exceeded for user {tenant} (limit: {} bytes/sec) while attempting to ingest '{}' lines totaling '{}' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased (ingestion_rate_mb)",
                    rate as u64, v.entries, v.bytes
                ),
            });
        }
        let mut refused = v.error_message();
        if !v.streams.is_empty() {
            let pl = PushLimits {
                max_streams: limits.max_global_streams_per_user,
                ooo_window_ns: limits.log_out_of_order_window.as_millis() * 1_000_000,
            };
            let written = self.writer.push(tenant, v.streams, &pl).await?;
            if !written.rejected.is_empty() {
                let mut msg = refused.map(|m| m + "\n").unwrap_or_default();
                msg.push_str(&written.rejected.join("\n"));
                refused = Some(msg);
            }
        }
        Ok(refused)
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Routes that read (need `Extension<TenantSet>`).
pub fn read_routes(api: LogsApi) -> Router {
    Router::new()
        .route("/loki/api/v1/query", get(query).post(query))
        .route(
            "/loki/api/v1/query_range",
            get(query_range).post(query_range),
        )
        .route("/loki/api/v1/labels", get(labels).post(labels))
        .route("/loki/api/v1/label", get(labels).post(labels))
        .route(
            "/loki/api/v1/label/{name}/values",
            get(label_values).post(label_values),
        )
        .route("/loki/api/v1/series", get(series).post(series))
        .route(
            "/loki/api/v1/index/stats",
            get(index_stats).post(index_stats),
        )
        .route("/loki/api/v1/index/volume", get(volume).post(volume))
        .route(
            "/loki/api/v1/index/volume_range",
            get(volume_range).post(volume_range),
        )
        .route(
            "/loki/api/v1/detected_labels",
            get(detected_labels).post(detected_labels),
        )
        .route(
            "/loki/api/v1/detected_fields",
            get(detected_fields).post(detected_fields),
        )
        .route(
            "/loki/api/v1/detected_field/{name}/values",
            get(detected_field_values).post(detected_field_values),
        )
        .route("/loki/api/v1/patterns", get(patterns).post(patterns))
        .route("/loki/api/v1/drilldown-limits", get(drilldown_limits))
        .route("/loki/api/v1/tail", get(tail))
        .route("/api/prom/tail", get(tail))
        .route("/api/prom/label", get(labels))
        .route("/api/prom/label/{name}/values", get(label_values))
        .route("/api/prom/series", get(series).post(series))
        .with_state(api)
}

/// Routes that need no tenant.
pub fn public_routes() -> Router {
    Router::new()
        .route("/loki/api/v1/status/buildinfo", get(buildinfo))
        .route(
            "/loki/api/v1/format_query",
            get(format_query).post(format_query),
        )
}

/// Routes that write (need `Extension<TenantId>`).
pub fn write_routes(api: LogsApi) -> Router {
    let cap = api.overrides.defaults().max_request_size_bytes;
    Router::new()
        .route("/loki/api/v1/push", post(push))
        .route("/api/prom/push", post(push))
        .route("/otlp/v1/logs", post(otlp_logs))
        .route("/v1/logs", post(otlp_logs))
        .layer(DefaultBodyLimit::max(cap))
        .with_state(api)
}

// ---------------------------------------------------------------------------------------------
// Errors, parameters.

/// Loki's error response: the message as plain text with the error's status.
pub fn loki_error(e: &Error) -> Response {
    (
        e.status(),
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{e}\n"),
    )
        .into_response()
}

fn bad(msg: impl Into<String>) -> Error {
    Error::BadRequest(msg.into())
}

/// Parses a Loki time parameter to unix ns: a number with a `.` is float seconds, an integer of
/// at most 10 digits is seconds, a longer one nanoseconds; otherwise RFC 3339.
pub fn parse_time(s: &str) -> Result<i64, Error> {
    let err = || bad(format!("cannot parse {s:?} to a valid timestamp"));
    if s.contains('.') {
        if let Ok(f) = s.parse::<f64>() {
            if !f.is_finite() || f.abs() > 9.2e9 {
                return Err(err());
            }
            return Ok((f * 1e9).round() as i64);
        }
    }
    if let Ok(n) = s.parse::<i64>() {
        let digits = s.trim_start_matches('-').len();
        return Ok(if digits <= 10 {
            n.checked_mul(1_000_000_000).ok_or_else(err)?
        } else {
            n
        });
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(err)
}

/// Parses a duration parameter (`5m`, `1h30m`, `250ms`, or float seconds) to ns.
pub fn parse_duration(s: &str) -> Result<i64, Error> {
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() && f.abs() < 9.2e9 {
            return Ok((f * 1e9).round() as i64);
        }
    }
    common::time::parse_duration_units(s)
        .map(|ms| ms * 1_000_000)
        .ok_or_else(|| bad(format!("cannot parse {s:?} to a valid duration")))
}

struct Params(FormParams);

impl Params {
    fn new(q: Option<&str>, h: &HeaderMap, body: &[u8]) -> Self {
        let ct = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        Params(FormParams::new(q, ct, body))
    }

    fn get(&self, n: &str) -> Option<&str> {
        self.0.get(n).filter(|v| !v.is_empty())
    }

    fn time(&self, n: &str) -> Result<Option<i64>, Error> {
        self.get(n).map(parse_time).transpose()
    }

    fn duration(&self, n: &str) -> Result<Option<i64>, Error> {
        self.get(n).map(parse_duration).transpose()
    }

    fn usize(&self, n: &str, default: usize) -> Result<usize, Error> {
        match self.get(n) {
            None => Ok(default),
            Some(s) => s
                .parse::<i64>()
                .map(|v| v.max(0) as usize)
                .map_err(|_| bad(format!("invalid {n}: {s:?}"))),
        }
    }

    /// `start`/`end`/`since` with Loki's defaults: end = now, start = end − since (default
    /// `default_since`).
    fn range(&self, default_since: i64) -> Result<(i64, i64), Error> {
        let end = self.time("end")?.unwrap_or_else(now_ns);
        let since = self.duration("since")?.unwrap_or(default_since);
        let start = self.time("start")?.unwrap_or(end - since);
        if end < start {
            return Err(bad(
                "end timestamp must not be before or equal to start time",
            ));
        }
        Ok((start, end))
    }

    fn direction(&self) -> Result<Direction, Error> {
        match self
            .get("direction")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("backward") => Ok(Direction::Backward),
            Some("forward") => Ok(Direction::Forward),
            Some(other) => Err(bad(format!("invalid direction {other:?}"))),
        }
    }
}

const HOUR_NS: i64 = 3_600_000_000_000;

fn parse_query(q: Option<&str>) -> Result<Expr, Error> {
    let q = q.ok_or_else(|| bad("query parameter is required"))?;
    parser::parse(q)
}

/// Stream selector of a `query`/`match[]` parameter (a log query; pipelines are ignored).
fn parse_selector(q: &str) -> Result<Vec<Matcher>, Error> {
    match parser::parse(q)? {
        Expr::Log(l) => Ok(l.matchers),
        Expr::Metric(_) => Err(bad(format!("{q:?} is not a stream selector"))),
    }
}

fn ok(data: Value) -> Response {
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

// ---------------------------------------------------------------------------------------------
// Ingest.

async fn push(
    Extension(tenant): Extension<TenantId>,
    State(api): State<LogsApi>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let hv = |n: header::HeaderName| h.get(n).and_then(|v| v.to_str().ok());
    let max = api.overrides.get(&tenant).max_request_size_bytes;
    let raw = match ingest::decode_push(
        &body,
        hv(header::CONTENT_TYPE),
        hv(header::CONTENT_ENCODING),
        max,
    ) {
        Ok(r) => r,
        Err(e) => return loki_error(&e),
    };
    match api.ingest(&tenant, raw).await {
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Ok(Some(refused)) => loki_error(&Error::BadRequest(refused)),
        Err(e) => loki_error(&e),
    }
}

async fn otlp_logs(
    Extension(tenant): Extension<TenantId>,
    State(api): State<LogsApi>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let hv = |n: header::HeaderName| h.get(n).and_then(|v| v.to_str().ok());
    let json_ct = hv(header::CONTENT_TYPE).is_some_and(|c| c.starts_with("application/json"));
    let max = api.overrides.get(&tenant).max_request_size_bytes;
    let req = match otlp::decode_http(
        &body,
        hv(header::CONTENT_TYPE),
        hv(header::CONTENT_ENCODING),
        max,
    ) {
        Ok(r) => r,
        Err(e) => return loki_error(&e),
    };
    let total: usize = req
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum();
    let raw = otlp::to_streams(req, now_ns());
    match api.ingest(&tenant, raw).await {
        Ok(refused) => otlp::response(json_ct, refused, total),
        Err(e) => loki_error(&e),
    }
}

// ---------------------------------------------------------------------------------------------
// Queries.

type ReadArgs = (
    Extension<TenantSet>,
    State<LogsApi>,
    RawQuery,
    HeaderMap,
    Bytes,
);

fn limits_for(api: &LogsApi, t: &TenantSet) -> common::limits::Limits {
    // Federated reads use the strictest limit of the tenants involved.
    let mut it = t.tenants().iter().map(|id| api.overrides.get(id));
    let mut l = (*it.next().expect("tenant set is never empty")).clone();
    for o in it {
        l.max_entries_limit_per_query = l
            .max_entries_limit_per_query
            .min(o.max_entries_limit_per_query);
        l.max_query_series = l.max_query_series.min(o.max_query_series);
    }
    l
}

fn check_limit(limit: usize, max: usize) -> Result<(), Error> {
    if max > 0 && limit > max {
        return Err(bad(format!(
            "max entries limit per query exceeded, limit > max_entries_limit_per_query ({limit} > {max})"
        )));
    }
    Ok(())
}

fn categorize(h: &HeaderMap) -> bool {
    h.get("X-Loki-Response-Encoding-Flags")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|f| f.trim() == "categorize-labels"))
}

async fn query((Extension(t), State(api), RawQuery(q), h, body): ReadArgs) -> Response {
    let started = Instant::now();
    let p = Params::new(q.as_deref(), &h, &body);
    let run = async {
        let expr = parse_query(p.get("query"))?;
        if engine::is_log_query(&expr) {
            return Err(bad("log queries are not supported as an instant query type, please change your query to a range query type"));
        }
        let ts = p.time("time")?.unwrap_or_else(now_ns);
        let limits = limits_for(&api, &t);
        let limit = p.usize("limit", 100)?;
        check_limit(limit, limits.max_entries_limit_per_query)?;
        let qp = QueryParams {
            tenants: t.clone(),
            start: ts,
            end: ts,
            step: 1,
            limit,
            direction: p.direction()?,
            interval: None,
            categorize: false,
            max_series: limits.max_query_series,
        };
        engine::evaluate(api.source.as_ref(), &expr, &qp, true).await
    };
    match run.await {
        Ok((r, stats)) => ok(result_json(r, &stats, started, false)),
        Err(e) => loki_error(&e),
    }
}

async fn query_range((Extension(t), State(api), RawQuery(q), h, body): ReadArgs) -> Response {
    let started = Instant::now();
    let p = Params::new(q.as_deref(), &h, &body);
    let cat = categorize(&h);
    let run = async {
        let expr = parse_query(p.get("query"))?;
        let (start, end) = p.range(HOUR_NS)?;
        let limits = limits_for(&api, &t);
        let limit = p.usize("limit", 100)?;
        check_limit(limit, limits.max_entries_limit_per_query)?;
        let default_step = (((end - start) / 1_000_000_000) / 250).max(1) * 1_000_000_000;
        let step = p.duration("step")?.unwrap_or(default_step);
        if step <= 0 {
            return Err(bad("zero or negative query resolution step widths are not accepted. Try a positive integer"));
        }
        if (end - start) / step > 11_000 {
            return Err(bad("exceeded maximum resolution of 11,000 points per time series. Try increasing the value of the step parameter"));
        }
        let qp = QueryParams {
            tenants: t.clone(),
            start,
            end,
            step,
            limit,
            direction: p.direction()?,
            interval: p.duration("interval")?.filter(|i| *i > 0),
            categorize: cat,
            max_series: limits.max_query_series,
        };
        engine::evaluate(api.source.as_ref(), &expr, &qp, false).await
    };
    match run.await {
        Ok((r, stats)) => ok(result_json(r, &stats, started, cat)),
        Err(e) => loki_error(&e),
    }
}

fn labels_json(l: &Labels) -> Value {
    serde_json::to_value(l).unwrap_or(Value::Null)
}

fn pairs_json(v: &[(String, String)]) -> Value {
    Value::Object(
        v.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn sample_json(ts_ns: i64, v: f64) -> Value {
    json!([common::time::format_prom_ts(ts_ns / 1_000_000), format_f(v)])
}

/// The `data` object of a query response.
fn result_json(r: QueryResult, stats: &QueryStats, started: Instant, cat: bool) -> Value {
    let mut returned = 0usize;
    let (kind, result) = match r {
        QueryResult::Streams(streams) => {
            let v: Vec<Value> = streams
                .into_iter()
                .map(|s| {
                    returned += s.entries.len();
                    let values: Vec<Value> = s
                        .entries
                        .into_iter()
                        .map(|e| {
                            let mut row = vec![Value::String(e.ts.to_string()), Value::String(e.line)];
                            if cat && (!e.metadata.is_empty() || !e.parsed.is_empty()) {
                                let mut extra = Map::new();
                                if !e.metadata.is_empty() {
                                    extra.insert("structuredMetadata".into(), pairs_json(&e.metadata));
                                }
                                if !e.parsed.is_empty() {
                                    extra.insert("parsed".into(), pairs_json(&e.parsed));
                                }
                                row.push(Value::Object(extra));
                            }
                            Value::Array(row)
                        })
                        .collect();
                    json!({"stream": labels_json(&s.labels), "values": values})
                })
                .collect();
            ("streams", Value::Array(v))
        }
        QueryResult::Matrix(m) => (
            "matrix",
            Value::Array(
                m.into_iter()
                    .map(|s| {
                        returned += s.points.len();
                        json!({"metric": labels_json(&s.labels),
                            "values": s.points.iter().map(|(t, v)| sample_json(*t, *v)).collect::<Vec<_>>()})
                    })
                    .collect(),
            ),
        ),
        QueryResult::Vector(ts, v) => (
            "vector",
            Value::Array(
                v.into_iter()
                    .map(|(l, x)| {
                        returned += 1;
                        json!({"metric": labels_json(&l), "value": sample_json(ts, x)})
                    })
                    .collect(),
            ),
        ),
        QueryResult::Scalar(ts, v) => ("scalar", sample_json(ts, v)),
    };
    let mut data = json!({"resultType": kind, "result": result, "stats": stats_json(stats, started, returned)});
    if cat && kind == "streams" {
        data["encodingFlags"] = json!(["categorize-labels"]);
    }
    data
}

/// Loki's `stats` block; Grafana reads `summary.*`.
fn stats_json(s: &QueryStats, started: Instant, returned: usize) -> Value {
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let store = json!({
        "totalChunksRef": s.scan.chunks, "totalChunksDownloaded": s.scan.chunks,
        "chunksDownloadTime": 0, "queryReferencedStructuredMetadata": false,
        "chunk": {"headChunkBytes": 0, "headChunkLines": 0, "decompressedBytes": s.scan.bytes,
            "decompressedLines": s.scan.entries, "compressedBytes": 0, "totalDuplicates": 0,
            "postFilterLines": s.post_filter_lines, "headChunkStructuredMetadataBytes": 0,
            "decompressedStructuredMetadataBytes": 0},
        "chunkRefsFetchTime": 0, "congestionControlLatency": 0, "pipelineWrapperFilteredLines": 0
    });
    json!({
        "summary": {
            "bytesProcessedPerSecond": (s.scan.bytes as f64 / secs) as u64,
            "linesProcessedPerSecond": (s.scan.entries as f64 / secs) as u64,
            "totalBytesProcessed": s.scan.bytes,
            "totalLinesProcessed": s.scan.entries,
            "execTime": secs,
            "queueTime": 0,
            "subqueries": 0,
            "totalEntriesReturned": returned,
            "splits": 0,
            "shards": 0,
            "totalPostFilterLines": s.post_filter_lines,
            "totalStructuredMetadataBytesProcessed": 0
        },
        "querier": {"store": store.clone()},
        "ingester": {"totalReached": 0, "totalChunksMatched": 0, "totalBatches": 0, "totalLinesSent": 0, "store": store},
        "cache": {
            "chunk": cache_stats(), "index": cache_stats(), "result": cache_stats(),
            "statsResult": cache_stats(), "volumeResult": cache_stats(), "seriesResult": cache_stats(),
            "labelResult": cache_stats(), "instantMetricResult": cache_stats()
        },
        "index": {"totalChunks": s.scan.chunks, "postFilterChunks": s.scan.chunks, "shardsDuration": 0, "usedBloomFilters": false}
    })
}

fn cache_stats() -> Value {
    json!({"entriesFound": 0, "entriesRequested": 0, "entriesStored": 0, "bytesReceived": 0,
        "bytesSent": 0, "requests": 0, "downloadTime": 0, "queryLengthServed": 0})
}

// ---------------------------------------------------------------------------------------------
// Labels, series, stats, volume.

async fn stream_stats(
    api: &LogsApi,
    t: &TenantSet,
    matchers: &[Matcher],
    start: i64,
    end: i64,
) -> Result<Vec<(Labels, crate::model::StreamStats)>, Error> {
    let Some((set, rest)) = engine::split_tenants(t, matchers) else {
        return Ok(Vec::new());
    };
    let federated = t.is_federated();
    let v = api.source.streams(&set, &rest, start, end).await?;
    Ok(v.into_iter()
        .map(|s| (engine::stream_labels(&s.info, federated), s))
        .collect())
}

/// Matchers of the optional `query` parameter; a selector matching everything otherwise.
fn optional_selector(p: &Params) -> Result<Vec<Matcher>, Error> {
    match p.get("query") {
        Some(q) => parse_selector(q),
        None => Ok(Vec::new()),
    }
}

async fn labels((Extension(t), State(api), RawQuery(q), h, body): ReadArgs) -> Response {
    let p = Params::new(q.as_deref(), &h, &body);
    let run = async {
        let (start, end) = p.range(HOUR_NS)?;
        let m = optional_selector(&p)?;
        let names: BTreeSet<String> = stream_stats(&api, &t, &m, start, end)
            .await?
            .iter()
            .flat_map(|(l, _)| l.iter().map(|x| x.name.clone()).collect::<Vec<_>>())
            .collect();
        Ok::<_, Error>(names)
    };
    match run.await {
        Ok(n) => ok(json!(n)),
        Err(e) => loki_error(&e),
    }
}

async fn label_values(
    Path(name): Path<String>,
    (Extension(t), State(api), RawQuery(q), h, body): ReadArgs,
) -> Response {
    let p = Params::new(q.as_deref(), &h, &body);
    let run = async {
        let (start, end) = p.range(HOUR_NS)?;
        let m = optional_selector(&p)?;
        let values: BTreeSet<String> = stream_stats(&api, &t, &m, start, end)
            .await?
            .iter()
            .filter_map(|(l, _)| l.get(&name).map(str::to_string))
            .collect();
        Ok::<_, Error>(values)
    };
    match run.await {
        Ok(v) => ok(json!(v)),
        Err(e) => loki_error(&e),
    }
}

async fn series((Extension(t), State(api), RawQuery(q), h, body): ReadArgs) -> Response {
    let p = Params::new(q.as_deref(), &h, &body);
    let run = async {
        let (start, end) = p.range(HOUR_NS)?;
        let mut sels: Vec<&str> = p.0.all("match[]");
        sels.extend(p.0.all("match"));
        if sels.is_empty() {
            return Err(bad("at least one match[] argument is required"));
        }
        let mut out: BTreeSet<Labels> = BTreeSet::new();
        for s in sels {
            let m = parse_selector(s)?;
            for (l, _) in stream_stats(&api, &t, &m, start, end).await? {
                out.insert(l);
            }
        }
        Ok(out)
    };
    match run.await {
        Ok(v) => ok(Value::Array(v.iter().map(labels_json).collect())),
        Err(e) => loki_error(&e),
    }
}

async fn index_stats((Extension(t), State(api), RawQuery(q), h, body): ReadArgs) -> Response {
    let p = Params::new(q.as_deref(), &h, &body);
    let run = async {
        let (start, end) = p.range(HOUR_NS)?;
        let m = optional_selector(&p)?;
        let s = stream_stats(&api, &t, &m, start, end).await?;
        Ok::<_, Error>(json!({
            "streams": s.len(),
            "chunks": s.iter().map(|x| x.1.chunks).sum::<u64>(),
            "entries": s.iter().map(|x| x.1.entries).sum::<u64>(),
            "bytes": s.iter().map(|x| x.1.bytes).sum::<u64>(),
        }))
    };
    match run.await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => loki_error(&e),
    }
}

/// The label names a volume request aggregates by: `targetLabels`, else the selector's.
fn volume_labels(p: &Params, m: &[Matcher]) -> Vec<String> {
    match p.get("targetLabels") {
        Some(t) => t
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        None => {
            let mut v: Vec<String> = m.iter().map(|m| m.name.clone()).collect();
            v.sort();
            v.dedup();
            v
        }
    }
}

async fn volume((Extension(t), State(api), RawQuery(q), h, body): ReadArgs) -> Response {
    let p = Params::new(q.as_deref(), &h, &body);
    let run = async {
        let (start, end) = p.range(HOUR_NS)?;
        let m = parse_selector(
            p.get("query")
                .ok_or_else(|| bad("query parameter is required"))?,
        )?;
        let limit = p.usize("limit", 100)?;
        let by = volume_labels(&p, &m);
        let per_label = p.get("aggregateBy") == Some("labels");
        let mut acc: HashMap<Labels, u64> = HashMap::new();
        for (l, s) in stream_stats(&api, &t, &m, start, end).await? {
            if per_label {
                for x in l.iter().filter(|x| by.is_empty() || by.contains(&x.name)) {
                    *acc.entry(Labels::from_pairs([(x.name.as_str(), x.value.as_str())]))
                        .or_default() += s.bytes;
                }
            } else {
                let key = Labels::from_pairs(
                    l.iter()
                        .filter(|x| by.contains(&x.name))
                        .map(|x| (x.name.as_str(), x.value.as_str())),
                );
                *acc.entry(key).or_default() += s.bytes;
            }
        }
        let mut v: Vec<(Labels, u64)> = acc.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(limit.max(1));
        Ok::<_, Error>(
            json!({"resultType": "vector", "result": v.iter().map(|(l, b)| json!({
            "metric": labels_json(l),
            "value": [common::time::format_prom_ts(end / 1_000_000), b.to_string()]
        })).collect::<Vec<_>>()}),
        )
    };
    match run.await {
        Ok(v) => ok(v),
        Err(e) => loki_error(&e),
    }
}

async fn volume_range((Extension(t), State(api), RawQuery(q), h, body): ReadArgs) -> Response {
    let started = Instant::now();
    let p = Params::new(q.as_deref(), &h, &body);
    let run = async {
        let (start, end) = p.range(HOUR_NS)?;
        let m = parse_selector(
            p.get("query")
                .ok_or_else(|| bad("query parameter is required"))?,
        )?;
        let by = volume_labels(&p, &m);
        let default_step = (((end - start) / 1_000_000_000) / 250).max(1) * 1_000_000_000;
        let step = p.duration("step")?.unwrap_or(default_step).max(1_000_000);
        if (end - start) / step > 11_000 {
            return Err(bad("exceeded maximum resolution of 11,000 points per time series. Try increasing the value of the step parameter"));
        }
        // Volume over time is `sum by (<labels>) (bytes_over_time(<selector> [step]))`.
        let expr = Expr::Metric(MetricExpr::Vector {
            op: VectorOp::Sum,
            param: None,
            grouping: Some(Grouping {
                without: false,
                labels: by,
            }),
            expr: Box::new(MetricExpr::Range {
                op: RangeOp::BytesOverTime,
                param: None,
                range: LogRange {
                    log: LogExpr {
                        matchers: m,
                        stages: Vec::new(),
                    },
                    range_ns: step,
                    offset_ns: 0,
                    unwrap: None,
                },
                grouping: None,
            }),
        });
        let qp = QueryParams {
            tenants: t.clone(),
            start,
            end,
            step,
            limit: 0,
            direction: Direction::Backward,
            interval: None,
            categorize: false,
            max_series: 0,
        };
        engine::evaluate(api.source.as_ref(), &expr, &qp, false).await
    };
    match run.await {
        Ok((r, stats)) => ok(result_json(r, &stats, started, false)),
        Err(e) => loki_error(&e),
    }
}

async fn detected_labels((Extension(t), State(api), RawQuery(q), h, body): ReadArgs) -> Response {
    let p = Params::new(q.as_deref(), &h, &body);
    let run = async {
        let (start, end) = p.range(HOUR_NS)?;
        let m = optional_selector(&p)?;
        let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (l, _) in stream_stats(&api, &t, &m, start, end).await? {
            for x in l.iter() {
                values
                    .entry(x.name.clone())
                    .or_default()
                    .insert(x.value.clone());
            }
        }
        Ok::<_, Error>(json!({"detectedLabels": values.iter()
            .filter(|(n, _)| !n.starts_with("__"))
            .map(|(n, v)| json!({"label": n, "cardinality": v.len()})).collect::<Vec<_>>()}))
    };
    match run.await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => loki_error(&e),
    }
}

/// Fields found in the lines of a log query, per name: values, type guess and parsers.
struct Field {
    values: BTreeSet<String>,
    kind: &'static str,
    parsers: BTreeSet<&'static str>,
}

fn guess_type(v: &str) -> &'static str {
    if v.parse::<i64>().is_ok() {
        "int"
    } else if v.parse::<f64>().is_ok() {
        "float"
    } else if v == "true" || v == "false" {
        "boolean"
    } else if crate::logql::units::parse_go_duration(v).is_some() {
        "duration"
    } else if crate::logql::units::parse_bytes(v).is_some()
        && v.chars().any(|c| c.is_ascii_alphabetic())
    {
        "bytes"
    } else {
        "string"
    }
}

async fn collect_fields(
    api: &LogsApi,
    t: &TenantSet,
    p: &Params,
) -> Result<BTreeMap<String, Field>, Error> {
    let expr = parse_query(p.get("query"))?;
    let Expr::Log(log) = expr else {
        return Err(bad("detected fields need a log query"));
    };
    let (start, end) = p.range(HOUR_NS)?;
    let line_limit = p.usize("line_limit", 1000)?.max(1);
    let qp = QueryParams {
        tenants: t.clone(),
        start,
        end,
        step: 1,
        limit: line_limit,
        direction: Direction::Backward,
        interval: None,
        categorize: true,
        max_series: 0,
    };
    let (r, _) = engine::evaluate(api.source.as_ref(), &Expr::Log(log), &qp, false).await?;
    let QueryResult::Streams(streams) = r else {
        return Ok(BTreeMap::new());
    };
    let mut fields: BTreeMap<String, Field> = BTreeMap::new();
    let mut add = |name: &str, value: &str, parser: Option<&'static str>| {
        let f = fields.entry(name.to_string()).or_insert_with(|| Field {
            values: BTreeSet::new(),
            kind: guess_type(value),
            parsers: BTreeSet::new(),
        });
        if f.kind != "string" && guess_type(value) != f.kind {
            f.kind = "string";
        }
        f.values.insert(value.to_string());
        if let Some(p) = parser {
            f.parsers.insert(p);
        }
    };
    for s in &streams {
        for e in &s.entries {
            for (k, v) in &e.metadata {
                add(k, v, None);
            }
            let line = e.line.as_bytes();
            let mut found: Vec<(String, String)> = Vec::new();
            if jsonx::extract_all(line, &mut |k, v| {
                found.push((k.to_string(), v.into_owned()))
            })
            .is_ok()
            {
                for (k, v) in &found {
                    add(k, v, Some("json"));
                }
            } else {
                found.clear();
                let _ = logfmt::parse(line, false, false, &mut |k, v| {
                    found.push((k.to_string(), v.into_owned()))
                });
                for (k, v) in &found {
                    add(k, v, Some("logfmt"));
                }
            }
        }
    }
    Ok(fields)
}

async fn detected_fields((Extension(t), State(api), RawQuery(q), h, body): ReadArgs) -> Response {
    let p = Params::new(q.as_deref(), &h, &body);
    let run = async {
        let limit = p.usize("limit", 1000)?.min(p.usize("field_limit", 1000)?);
        let fields = collect_fields(&api, &t, &p).await?;
        let list: Vec<Value> = fields
            .iter()
            .take(limit)
            .map(|(n, f)| {
                let parsers: Vec<&str> = f.parsers.iter().copied().collect();
                json!({"label": n, "type": f.kind, "cardinality": f.values.len(),
                    "parsers": if parsers.is_empty() { Value::Null } else { json!(parsers) },
                    "jsonPath": if f.parsers.contains("json") { json!([n]) } else { json!([]) }})
            })
            .collect();
        Ok::<_, Error>(json!({"fields": list, "limit": limit}))
    };
    match run.await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => loki_error(&e),
    }
}

async fn detected_field_values(
    Path(name): Path<String>,
    (Extension(t), State(api), RawQuery(q), h, body): ReadArgs,
) -> Response {
    let p = Params::new(q.as_deref(), &h, &body);
    let run = async {
        let limit = p.usize("limit", 1000)?;
        let fields = collect_fields(&api, &t, &p).await?;
        let values: Vec<String> = fields
            .get(&name)
            .map(|f| f.values.iter().take(limit).cloned().collect())
            .unwrap_or_default();
        Ok::<_, Error>(json!({"values": values, "limit": limit}))
    };
    match run.await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => loki_error(&e),
    }
}

/// Turns a line into a pattern: tokens holding digits (numbers, ids, times, addresses) become
/// `<_>`. Lines with the same pattern are counted together.
fn line_pattern(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for (i, tok) in line.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if tok.bytes().any(|b| b.is_ascii_digit()) {
            // Keep `key=` prefixes of logfmt pairs readable.
            match tok.find('=') {
                Some(eq) if eq > 0 && !tok[..eq].bytes().any(|b| b.is_ascii_digit()) => {
                    out.push_str(&tok[..=eq]);
                    out.push_str("<_>");
                }
                _ => out.push_str("<_>"),
            }
        } else {
            out.push_str(tok);
        }
    }
    out
}

async fn patterns((Extension(t), State(api), RawQuery(q), h, body): ReadArgs) -> Response {
    let p = Params::new(q.as_deref(), &h, &body);
    let run = async {
        let expr = parse_query(p.get("query"))?;
        let Expr::Log(log) = expr else {
            return Err(bad("patterns need a stream selector"));
        };
        let (start, end) = p.range(HOUR_NS)?;
        let step = p
            .duration("step")?
            .unwrap_or(60_000_000_000)
            .max(1_000_000_000);
        let qp = QueryParams {
            tenants: t.clone(),
            start,
            end,
            step: 1,
            limit: 5000,
            direction: Direction::Backward,
            interval: None,
            categorize: true,
            max_series: 0,
        };
        let (r, _) = engine::evaluate(api.source.as_ref(), &Expr::Log(log), &qp, false).await?;
        let QueryResult::Streams(streams) = r else {
            return Ok(json!([]));
        };
        let mut acc: BTreeMap<(String, String), BTreeMap<i64, u64>> = BTreeMap::new();
        for s in &streams {
            for e in &s.entries {
                let level = e
                    .metadata
                    .iter()
                    .find(|(k, _)| k == "detected_level")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| "unknown".into());
                let bucket = (e.ts - start) / step * step + start;
                *acc.entry((line_pattern(&e.line), level))
                    .or_default()
                    .entry(bucket / 1_000_000_000)
                    .or_default() += 1;
            }
        }
        let mut list: Vec<(u64, Value)> = acc
            .into_iter()
            .map(|((pattern, level), samples)| {
                let total: u64 = samples.values().sum();
                (total, json!({"pattern": pattern, "level": level,
                    "samples": samples.into_iter().map(|(t, c)| json!([t, c])).collect::<Vec<_>>()}))
            })
            .collect();
        list.sort_by_key(|x| std::cmp::Reverse(x.0));
        Ok(Value::Array(list.into_iter().map(|x| x.1).collect()))
    };
    match run.await {
        Ok(v) => ok(v),
        Err(e) => loki_error(&e),
    }
}

/// How often a tail polls the store for new entries.
const TAIL_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// `GET /loki/api/v1/tail` (WebSocket): sends entries of a log query as they arrive, oldest first,
/// as `{"streams":[…],"dropped_entries":null}` messages. New entries are found by polling the
/// store every 250 ms from a cursor, so a line is delivered well within a second of its push.
async fn tail(
    ws: axum::extract::ws::WebSocketUpgrade,
    (Extension(t), State(api), RawQuery(q), h, body): ReadArgs,
) -> Response {
    let p = Params::new(q.as_deref(), &h, &body);
    let setup = || -> Result<(LogExpr, i64, i64, usize), Error> {
        let Expr::Log(log) = parse_query(p.get("query"))? else {
            return Err(bad("tail needs a log query"));
        };
        let delay = p
            .get("delay_for")
            .map(|d| d.parse::<i64>().unwrap_or(0))
            .unwrap_or(0);
        if !(0..=5).contains(&delay) {
            return Err(bad("delay_for can't be greater than 5"));
        }
        let start = p.time("start")?.unwrap_or_else(|| now_ns() - HOUR_NS);
        let limit = p.usize("limit", 100)?.max(1);
        Ok((log, delay * 1_000_000_000, start, limit))
    };
    let (log, delay_ns, start, limit) = match setup() {
        Ok(s) => s,
        Err(e) => return loki_error(&e),
    };
    ws.on_upgrade(move |socket| tail_loop(socket, api, t, log, delay_ns, start, limit))
}

async fn tail_loop(
    mut socket: axum::extract::ws::WebSocket,
    api: LogsApi,
    tenants: TenantSet,
    log: LogExpr,
    delay_ns: i64,
    mut cursor: i64,
    limit: usize,
) {
    use axum::extract::ws::Message;
    // Entries already sent at exactly `cursor` (the next poll starts there, inclusive).
    let mut sent_at_cursor: BTreeSet<(Labels, String)> = BTreeSet::new();
    let expr = Expr::Log(log);
    loop {
        let end = now_ns() - delay_ns + 1;
        if end > cursor {
            let qp = QueryParams {
                tenants: tenants.clone(),
                start: cursor,
                end,
                step: 1,
                limit,
                direction: Direction::Forward,
                interval: None,
                categorize: false,
                max_series: 0,
            };
            let streams = match engine::evaluate(api.source.as_ref(), &expr, &qp, false).await {
                Ok((QueryResult::Streams(s), _)) => s,
                Ok(_) => Vec::new(),
                Err(e) => {
                    let _ = socket.send(Message::Close(None)).await;
                    tracing::warn!(error = %e, "tail query failed");
                    return;
                }
            };
            let mut out = Vec::new();
            let mut newest = cursor;
            for s in &streams {
                for e in &s.entries {
                    newest = newest.max(e.ts);
                }
            }
            let mut next_sent: BTreeSet<(Labels, String)> = BTreeSet::new();
            for s in streams {
                let mut values = Vec::new();
                for e in s.entries {
                    let key = (s.labels.clone(), e.line.clone());
                    if e.ts == cursor && sent_at_cursor.contains(&key) {
                        continue;
                    }
                    if e.ts == newest {
                        next_sent.insert(key);
                    }
                    values.push(json!([e.ts.to_string(), e.line]));
                }
                if !values.is_empty() {
                    out.push(json!({"stream": labels_json(&s.labels), "values": values}));
                }
            }
            if newest == cursor {
                sent_at_cursor.extend(next_sent);
            } else {
                sent_at_cursor = next_sent;
                cursor = newest;
            }
            if !out.is_empty() {
                let msg = json!({"streams": out, "dropped_entries": null}).to_string();
                if socket.send(Message::Text(msg.into())).await.is_err() {
                    return;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(TAIL_POLL) => {}
            m = socket.recv() => match m {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                _ => {}
            },
        }
    }
}

async fn drilldown_limits(
    Extension(t): Extension<TenantSet>,
    State(api): State<LogsApi>,
) -> Response {
    let l = limits_for(&api, &t);
    axum::Json(json!({
        "limits": {
            "discover_log_levels": true,
            "discover_service_name": ingest::SERVICE_NAME_SOURCES,
            "log_level_fields": ["level", "LEVEL", "Level", "severity", "SEVERITY", "Severity", "lvl", "LVL", "Lvl"],
            "max_entries_limit_per_query": l.max_entries_limit_per_query,
            "max_line_size_truncate": l.max_line_size_truncate,
            "max_query_series": l.max_query_series,
            "pattern_persistence_enabled": false,
            "volume_enabled": true,
            "volume_max_series": 1000,
            "allow_structured_metadata": l.allow_structured_metadata
        },
        "pattern_ingester_enabled": true,
        "version": LOKI_VERSION
    }))
    .into_response()
}

async fn buildinfo() -> Response {
    axum::Json(json!({
        "version": LOKI_VERSION,
        "revision": env!("CARGO_PKG_VERSION"),
        "branch": "heimdall",
        "buildUser": "heimdall",
        "buildDate": "",
        "goVersion": ""
    }))
    .into_response()
}

async fn format_query(RawQuery(q): RawQuery, h: HeaderMap, body: Bytes) -> Response {
    let p = Params::new(q.as_deref(), &h, &body);
    match parse_query(p.get("query")) {
        Ok(e) => ok(Value::String(e.to_string())),
        Err(e) => loki_error(&e),
    }
}

/// Loki push body for tests and the agent: snappy-compressed protobuf of `streams`.
pub fn encode_push(streams: &[StreamPush]) -> Vec<u8> {
    use prost::Message;
    let req = proto::loki::PushRequest {
        streams: streams
            .iter()
            .map(|s| proto::loki::StreamAdapter {
                labels: s.labels.to_string(),
                entries: s
                    .entries
                    .iter()
                    .map(|e| proto::loki::EntryAdapter {
                        timestamp: Some(proto::loki::Timestamp {
                            seconds: e.ts.div_euclid(1_000_000_000),
                            nanos: e.ts.rem_euclid(1_000_000_000) as i32,
                        }),
                        line: e.line.clone(),
                        structured_metadata: e
                            .metadata
                            .iter()
                            .map(|(n, v)| proto::loki::LabelPairAdapter {
                                name: n.clone(),
                                value: v.clone(),
                            })
                            .collect(),
                        parsed: Vec::new(),
                    })
                    .collect(),
                hash: 0,
            })
            .collect(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loki_time_parameters() {
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000_000_000_000);
        assert_eq!(
            parse_time("1700000000000000001").unwrap(),
            1_700_000_000_000_000_001
        );
        assert_eq!(
            parse_time("1700000000.5").unwrap(),
            1_700_000_000_500_000_000
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000_000_000
        );
        assert!(parse_time("yesterday").is_err());
        assert_eq!(parse_duration("5m").unwrap(), 300_000_000_000);
        assert_eq!(parse_duration("1.5").unwrap(), 1_500_000_000);
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn patterns_mask_variable_tokens() {
        assert_eq!(
            line_pattern("level=info took=12ms user 42 logged in from 10.0.0.1"),
            "level=info took=<_> user <_> logged in from <_>"
        );
    }
}
