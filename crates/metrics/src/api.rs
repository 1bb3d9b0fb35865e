//! The Prometheus HTTP API (read side) and the metrics write endpoints (remote_write, OTLP/HTTP),
//! as axum routers. Tenancy is decided by the server's middleware and arrives as an
//! `Extension<TenantSet>` (reads) or `Extension<TenantId>` (writes); this module never reads
//! `X-Scope-OrgID` itself. Errors are mapped to Prometheus' JSON envelope in [`api_error`] only.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use common::limits::Overrides;
use common::ratelimit::RateLimiter;
use common::time::{now_ms, parse_prom_duration, parse_prom_time};
use common::{Matcher, TenantId, TenantSet};
use serde_json::{json, Value as Json};

use proto::otlp::tonic::collector::metrics::v1::ExportMetricsServiceResponse;

use crate::ingest::{otlp, remote_write};
use crate::promql;
use crate::tsdb::MetricsStore;
use crate::Error;

/// Earliest/latest times used when a read omits `start`/`end`.
const MIN_TIME: i64 = i64::MIN / 4;
const MAX_TIME: i64 = i64::MAX / 4;

/// Shared state of the metrics API.
#[derive(Clone)]
pub struct MetricsApi {
    /// The store of every tenant.
    pub store: MetricsStore,
    /// Per-tenant limits.
    pub overrides: Overrides,
    /// Metrics config (OTLP translation).
    pub cfg: Arc<common::config::MetricsConfig>,
    /// Ingestion rate limiter.
    pub rate: Arc<RateLimiter>,
    /// PromQL defaults.
    pub engine: promql::EngineOptions,
    /// Running totals for OTLP delta series (`otlp_delta: convert`), per tenant.
    pub deltas:
        Arc<parking_lot::Mutex<std::collections::HashMap<TenantId, otlp::DeltaAccumulator>>>,
}

/// Delta series idle this long are forgotten by the accumulator.
const DELTA_IDLE_MS: i64 = 3_600_000;

impl MetricsApi {
    /// Builds the API state over a store.
    pub fn new(
        store: MetricsStore,
        overrides: Overrides,
        cfg: common::config::MetricsConfig,
    ) -> Self {
        Self {
            store,
            overrides,
            cfg: Arc::new(cfg),
            rate: Arc::new(RateLimiter::default()),
            engine: promql::EngineOptions::default(),
            deltas: Default::default(),
        }
    }

    /// Periodic work: storage maintenance (block cutting, compaction, retention) and forgetting idle
    /// delta-conversion state.
    pub async fn maintenance(&self, now: i64) -> Result<(), Error> {
        self.deltas
            .lock()
            .values_mut()
            .for_each(|d| d.gc(now - DELTA_IDLE_MS));
        self.store.maintenance(now).await
    }
}

/// Routes that read (mount under `/` and `/prometheus`; need `Extension<TenantSet>`).
pub fn read_routes(api: MetricsApi) -> Router {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route(
            "/api/v1/query_exemplars",
            get(query_exemplars).post(query_exemplars),
        )
        .route("/api/v1/format_query", get(format_query).post(format_query))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/metadata", get(metadata))
        .with_state(api)
}

/// Routes that write (need `Extension<TenantId>`).
pub fn write_routes(api: MetricsApi) -> Router {
    // Compressed bodies are capped by the default limit; the decoders cap decompressed size per tenant.
    let body_cap = api.overrides.defaults().max_request_size_bytes;
    Router::new()
        .route("/api/v1/push", post(remote_write_handler))
        .route("/api/v1/write", post(remote_write_handler))
        .route("/otlp/v1/metrics", post(otlp_handler))
        .route("/v1/metrics", post(otlp_handler))
        .layer(DefaultBodyLimit::max(body_cap))
        .with_state(api)
}

// ---------------------------------------------------------------------------------------------
// Errors and envelopes

/// The Prometheus JSON error envelope for `e`, with the matching HTTP status.
pub fn api_error(e: &Error) -> Response {
    let error_type = match e {
        Error::BadData(_) => "bad_data",
        Error::Execution(_) => "execution",
        Error::Timeout(_) => "timeout",
        Error::TooManyRequests(_) => "too_many_requests",
        Error::TooLarge(_) => "too_large_entry",
        Error::UnsupportedMediaType(_) => "bad_data",
        _ => "internal",
    };
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        axum::Json(json!({"status": "error", "errorType": error_type, "error": e.to_string()})),
    )
        .into_response()
}

fn success(data: Json) -> Response {
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

fn success_with(data: Json, warnings: &[String], infos: &[String]) -> Response {
    let mut body = json!({"status": "success", "data": data});
    if !warnings.is_empty() {
        body["warnings"] = json!(warnings);
    }
    if !infos.is_empty() {
        body["infos"] = json!(infos);
    }
    axum::Json(body).into_response()
}

fn bad_param(name: &str, reason: impl std::fmt::Display) -> Error {
    Error::BadData(format!("invalid parameter {name:?}: {reason}"))
}

// ---------------------------------------------------------------------------------------------
// Parameters: query string merged with a form body (GET and POST alike).

/// Request parameters in order of appearance.
pub struct Params(common::params::FormParams);

impl Params {
    /// Merges the query string with an `application/x-www-form-urlencoded` body.
    pub fn new(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Self {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok());
        Self(common::params::FormParams::new(query, ct, body))
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name)
    }

    /// All values of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.all(name)
    }

    fn time(&self, name: &str, default: i64) -> Result<i64, Error> {
        match self.get(name) {
            None | Some("") => Ok(default),
            Some(s) => parse_prom_time(s).map_err(|e| bad_param(name, e)),
        }
    }

    fn usize(&self, name: &str) -> Result<usize, Error> {
        match self.get(name) {
            None | Some("") => Ok(0),
            Some(s) => s
                .parse::<i64>()
                .map_err(|_| bad_param(name, format!("cannot parse {s:?} to a valid limit")))
                .map(|n| n.max(0) as usize),
        }
    }

    fn range(&self) -> Result<(i64, i64), Error> {
        let start = self.time("start", MIN_TIME)?;
        let end = self.time("end", MAX_TIME)?;
        if end < start {
            return Err(bad_param(
                "end",
                "end timestamp must not be before start time",
            ));
        }
        Ok((start, end))
    }
}

/// Converts one parsed PromQL vector selector into matcher sets (one per `or` branch).
pub fn selector_matchers(
    vs: &promql_parser::parser::VectorSelector,
) -> Result<Vec<Vec<Matcher>>, Error> {
    use promql_parser::label::MatchOp as P;
    let conv = |ms: &[promql_parser::label::Matcher]| -> Result<Vec<Matcher>, Error> {
        let mut out = Vec::with_capacity(ms.len() + 1);
        if let Some(n) = &vs.name {
            out.push(Matcher::equal(common::labels::METRIC_NAME, n.clone()));
        }
        for m in ms {
            let op = match m.op {
                P::Equal => common::MatchOp::Equal,
                P::NotEqual => common::MatchOp::NotEqual,
                P::Re(_) => common::MatchOp::Regex,
                P::NotRe(_) => common::MatchOp::NotRegex,
            };
            out.push(
                Matcher::new(op, m.name.clone(), m.value.clone())
                    .map_err(|e| Error::BadData(e.to_string()))?,
            );
        }
        Ok(out)
    };
    let mut sets = vec![conv(&vs.matchers.matchers)?];
    for or in &vs.matchers.or_matchers {
        sets.push(conv(or)?);
    }
    Ok(sets)
}

/// Parses `match[]` selectors (each must be a plain vector selector).
fn parse_match(values: &[&str]) -> Result<Vec<Vec<Matcher>>, Error> {
    let mut out = Vec::new();
    for s in values {
        let expr = promql::parse(s).map_err(|e| bad_param("match[]", e))?;
        match expr {
            promql_parser::parser::Expr::VectorSelector(vs) => {
                let sets = selector_matchers(&vs)?;
                for set in &sets {
                    if set.iter().all(|m| m.matches_empty()) {
                        return Err(bad_param(
                            "match[]",
                            "match[] must contain at least one non-empty matcher",
                        ));
                    }
                }
                out.extend(sets);
            }
            _ => {
                return Err(bad_param(
                    "match[]",
                    format!("{s:?} is not a series selector"),
                ))
            }
        }
    }
    Ok(out)
}

/// Collects the vector selectors of an arbitrary PromQL expression.
fn collect_selectors(expr: &promql_parser::parser::Expr) -> Result<Vec<Vec<Matcher>>, Error> {
    struct V(Vec<Vec<Matcher>>, Option<Error>);
    impl promql_parser::util::ExprVisitor for V {
        type Error = ();
        fn pre_visit(&mut self, e: &promql_parser::parser::Expr) -> Result<bool, ()> {
            let vs = match e {
                promql_parser::parser::Expr::VectorSelector(vs) => Some(vs),
                promql_parser::parser::Expr::MatrixSelector(ms) => Some(&ms.vs),
                _ => None,
            };
            if let Some(vs) = vs {
                match selector_matchers(vs) {
                    Ok(sets) => self.0.extend(sets),
                    Err(e) => self.1 = Some(e),
                }
            }
            Ok(true)
        }
    }
    let mut v = V(Vec::new(), None);
    let _ = promql_parser::util::walk_expr(&mut v, expr);
    match v.1 {
        Some(e) => Err(e),
        None => Ok(v.0),
    }
}

/// Decodes Prometheus' `U__` escaping of label names in URL paths (`U__http_2e_status` → `http.status`).
fn unescape_label_name(name: &str) -> String {
    let Some(rest) = name.strip_prefix("U__") else {
        return name.to_string();
    };
    let mut out = String::new();
    let mut it = rest.chars().peekable();
    while let Some(c) = it.next() {
        if c != '_' {
            out.push(c);
            continue;
        }
        if it.peek() == Some(&'_') {
            it.next();
            out.push('_');
            continue;
        }
        let hex: String = it.by_ref().take_while(|c| *c != '_').collect();
        match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
            Some(ch) => out.push(ch),
            None => return name.to_string(),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Read handlers

type ReadArgs = (
    Extension<TenantSet>,
    State<MetricsApi>,
    RawQuery,
    HeaderMap,
    Bytes,
);

async fn series((Extension(t), State(api), RawQuery(q), h, body): ReadArgs) -> Response {
    let run = async {
        let p = Params::new(q.as_deref(), &h, &body);
        let matches = p.all("match[]");
        if matches.is_empty() {
            return Err(Error::BadData("no match[] parameter provided".into()));
        }
        let sel = parse_match(&matches)?;
        let (start, end) = p.range()?;
        let limit = p.usize("limit")?;
        let mut out = api
            .store
            .series(&t, &sel, start, end, limit_plus_one(limit))
            .await?;
        let warnings = truncate(&mut out, limit, "results truncated due to limit");
        Ok((json!(out), warnings))
    };
    respond(run.await)
}

async fn labels((Extension(t), State(api), RawQuery(q), h, body): ReadArgs) -> Response {
    let run = async {
        let p = Params::new(q.as_deref(), &h, &body);
        let sel = parse_match(&p.all("match[]"))?;
        let (start, end) = p.range()?;
        let limit = p.usize("limit")?;
        let mut out = api
            .store
            .label_names(&t, &sel, start, end, limit_plus_one(limit))
            .await?;
        let warnings = truncate(&mut out, limit, "results truncated due to limit");
        Ok((json!(out), warnings))
    };
    respond(run.await)
}

async fn label_values(
    Extension(t): Extension<TenantSet>,
    State(api): State<MetricsApi>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
) -> Response {
    let run = async {
        let p = Params::new(q.as_deref(), &h, &[]);
        let name = unescape_label_name(&name);
        if name.is_empty() {
            return Err(Error::BadData(format!("invalid label name: {name:?}")));
        }
        let sel = parse_match(&p.all("match[]"))?;
        let (start, end) = p.range()?;
        let limit = p.usize("limit")?;
        let mut out = api
            .store
            .label_values(&t, &name, &sel, start, end, limit_plus_one(limit))
            .await?;
        let warnings = truncate(&mut out, limit, "results truncated due to limit");
        Ok((json!(out), warnings))
    };
    respond(run.await)
}

async fn metadata(
    Extension(t): Extension<TenantSet>,
    State(api): State<MetricsApi>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
) -> Response {
    let run = async {
        let p = Params::new(q.as_deref(), &h, &[]);
        let limit = p
            .get("limit")
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<i64>()
                    .map_err(|_| bad_param("limit", "cannot parse to a valid limit"))
            })
            .transpose()?
            .unwrap_or(-1);
        let per = p
            .get("limit_per_metric")
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<i64>()
                    .map_err(|_| bad_param("limit_per_metric", "cannot parse to a valid limit"))
            })
            .transpose()?
            .unwrap_or(-1);
        let to_limit = |n: i64| if n <= 0 { usize::MAX } else { n as usize };
        let rows = api.store.metadata(
            &t,
            p.get("metric").filter(|m| !m.is_empty()),
            to_limit(limit),
            to_limit(per),
        );
        let mut obj = serde_json::Map::new();
        for (family, metas) in rows {
            let list: Vec<Json> = metas
                .iter()
                .map(|m| json!({"type": m.metric_type.as_str(), "help": m.help, "unit": m.unit}))
                .collect();
            obj.insert(family, Json::Array(list));
        }
        Ok((Json::Object(obj), vec![]))
    };
    respond(run.await)
}

async fn query_exemplars((Extension(t), State(api), RawQuery(q), h, body): ReadArgs) -> Response {
    let run = async {
        let p = Params::new(q.as_deref(), &h, &body);
        let query = p
            .get("query")
            .ok_or_else(|| bad_param("query", "query is required"))?;
        let expr = promql::parse(query).map_err(|e| bad_param("query", e))?;
        let (start, end) = p.range()?;
        let sel = collect_selectors(&expr)?;
        let rows = if sel.is_empty() {
            vec![]
        } else {
            api.store.exemplars(&t, &sel, start, end).await?
        };
        let out: Vec<Json> = rows
            .into_iter()
            .map(|(labels, ex)| {
                let ex: Vec<Json> = ex
                    .iter()
                    .map(|e| {
                        json!({"labels": e.labels, "value": promql::format_float(e.value),
                               "timestamp": common::time::format_prom_ts(e.t)})
                    })
                    .collect();
                json!({"seriesLabels": labels, "exemplars": ex})
            })
            .collect();
        Ok((Json::Array(out), vec![]))
    };
    respond(run.await)
}

async fn format_query((Extension(_t), State(_api), RawQuery(q), h, body): ReadArgs) -> Response {
    let p = Params::new(q.as_deref(), &h, &body);
    let Some(query) = p.get("query") else {
        return api_error(&bad_param("query", "query is required"));
    };
    match promql::parse(query) {
        Ok(e) => success(json!(e.prettify())),
        Err(e) => api_error(&bad_param("query", e)),
    }
}

fn engine_opts(api: &MetricsApi, p: &Params) -> Result<promql::EngineOptions, Error> {
    let mut opts = api.engine.clone();
    if let Some(t) = p.get("timeout").filter(|s| !s.is_empty()) {
        let ms = parse_prom_duration(t).map_err(|e| bad_param("timeout", e))?;
        if ms > 0 {
            opts.timeout = opts
                .timeout
                .min(std::time::Duration::from_millis(ms as u64));
        }
    }
    if let Some(l) = p.get("lookback_delta").filter(|s| !s.is_empty()) {
        let ms = parse_prom_duration(l).map_err(|e| bad_param("lookback_delta", e))?;
        if ms < 0 {
            return Err(bad_param(
                "lookback_delta",
                "lookback delta must be positive",
            ));
        }
        if ms > 0 {
            opts.lookback_delta_ms = ms;
        }
    }
    Ok(opts)
}

fn check_query_length(api: &MetricsApi, t: &TenantSet, start: i64, end: i64) -> Result<(), Error> {
    for tenant in t.tenants() {
        let max = api.overrides.get(tenant).max_query_length.as_millis();
        if max > 0 && end - start > max {
            return Err(Error::BadData(format!(
                "the query time range exceeds the limit (query length: {}s, limit: {}s) (tenant {tenant}, limit max_query_length)",
                (end - start) / 1000,
                max / 1000
            )));
        }
    }
    Ok(())
}

async fn query((Extension(t), State(api), RawQuery(q), h, body): ReadArgs) -> Response {
    let run = async {
        let p = Params::new(q.as_deref(), &h, &body);
        let query = p
            .get("query")
            .ok_or_else(|| bad_param("query", "unknown expression type \"<nil>\""))?;
        let time = p.time("time", now_ms())?;
        let opts = engine_opts(&api, &p)?;
        let src = api.store.source(t.clone());
        let r = promql::instant_query(&src, query, time, &opts).await?;
        Ok(r)
    };
    match run.await {
        Ok(r) => success_with(promql::result_json(&r.value), &r.warnings, &r.infos),
        Err(e) => api_error(&e),
    }
}

async fn query_range((Extension(t), State(api), RawQuery(q), h, body): ReadArgs) -> Response {
    let run = async {
        let p = Params::new(q.as_deref(), &h, &body);
        let query = p
            .get("query")
            .ok_or_else(|| bad_param("query", "unknown expression type \"<nil>\""))?;
        let start = p.time("start", MIN_TIME).and_then(|v| {
            if p.get("start").is_none() {
                Err(bad_param("start", "cannot parse \"\" to a valid timestamp"))
            } else {
                Ok(v)
            }
        })?;
        let end = match p.get("end") {
            None => return Err(bad_param("end", "cannot parse \"\" to a valid timestamp")),
            Some(_) => p.time("end", MAX_TIME)?,
        };
        if end < start {
            return Err(bad_param(
                "end",
                "end timestamp must not be before start time",
            ));
        }
        let step_s = p
            .get("step")
            .ok_or_else(|| bad_param("step", "cannot parse \"\" to a valid duration"))?;
        let step = parse_prom_duration(step_s).map_err(|e| bad_param("step", e))?;
        if step <= 0 {
            return Err(bad_param(
                "step",
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            ));
        }
        if (end - start) / step > 11_000 {
            return Err(Error::BadData(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
                    .into(),
            ));
        }
        check_query_length(&api, &t, start, end)?;
        let opts = engine_opts(&api, &p)?;
        let src = api.store.source(t.clone());
        promql::range_query(&src, query, start, end, step, &opts).await
    };
    match run.await {
        Ok(r) => success_with(promql::result_json(&r.value), &r.warnings, &r.infos),
        Err(e) => api_error(&e),
    }
}

fn limit_plus_one(limit: usize) -> usize {
    if limit == 0 {
        0
    } else {
        limit + 1
    }
}

fn truncate<T>(v: &mut Vec<T>, limit: usize, warning: &str) -> Vec<String> {
    if limit > 0 && v.len() > limit {
        v.truncate(limit);
        vec![warning.to_string()]
    } else {
        vec![]
    }
}

fn respond(r: Result<(Json, Vec<String>), Error>) -> Response {
    match r {
        Ok((data, warnings)) => success_with(data, &warnings, &[]),
        Err(e) => api_error(&e),
    }
}

// ---------------------------------------------------------------------------------------------
// Write handlers

fn plain(status: StatusCode, msg: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg,
    )
        .into_response()
}

fn rate_check(api: &MetricsApi, tenant: &TenantId, n: u64) -> Result<(), Error> {
    let l = api.overrides.get(tenant);
    if api
        .rate
        .try_take(tenant, n, l.ingestion_rate, l.ingestion_burst_size)
    {
        Ok(())
    } else {
        Err(Error::TooManyRequests(format!(
            "the request has been rejected because the tenant exceeded the ingestion rate limit, set to {} items/s with a maximum allowed burst of {} (tenant {tenant}, limits ingestion_rate / ingestion_burst_size)",
            l.ingestion_rate, l.ingestion_burst_size
        )))
    }
}

async fn remote_write_handler(
    Extension(tenant): Extension<TenantId>,
    State(api): State<MetricsApi>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let hv = |n: header::HeaderName| h.get(n).and_then(|v| v.to_str().ok());
    let limits = api.overrides.get(&tenant);
    let fail = |e: Error| {
        plain(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            format!("{e} (tenant {tenant})"),
        )
    };
    let mut raw = Vec::new();
    let version = match remote_write::decompress_into(
        &body,
        hv(header::CONTENT_TYPE),
        hv(header::CONTENT_ENCODING),
        &limits,
        &mut raw,
    ) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    drop(body);
    // Float-only 1.0 requests stay borrowed from `raw` (no per-series allocation); the rest goes
    // through the owned WriteBatch. Both give the same validation, limits and outcome.
    let decoded = match remote_write::decode_decompressed(&raw, version, &limits, now_ms()) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let v2 = version == remote_write::RwVersion::V2;
    let outcome = match decoded {
        remote_write::DecodedRef::Raw(w) => {
            if let Err(e) = rate_check(&api, &tenant, w.sample_count() as u64) {
                return plain(StatusCode::TOO_MANY_REQUESTS, e.to_string());
            }
            api.store.write_raw(&tenant, &w).await
        }
        remote_write::DecodedRef::Full(decoded) => {
            let batch = decoded.batch;
            let items = (batch.sample_count() + batch.histogram_count()) as u64;
            if let Err(e) = rate_check(&api, &tenant, items) {
                return plain(StatusCode::TOO_MANY_REQUESTS, e.to_string());
            }
            api.store.write(&tenant, batch).await
        }
    };
    let (status, msg, stats) = match outcome {
        Ok(o) if o.rejected_count == 0 => (StatusCode::NO_CONTENT, String::new(), o.stats),
        Ok(o) => (
            StatusCode::BAD_REQUEST,
            format!(
                "{} of the request's samples were rejected (tenant {tenant}); first errors: {}",
                o.rejected_count,
                o.rejected.join("; ")
            ),
            o.stats,
        ),
        Err(e) => (
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            e.to_string(),
            Default::default(),
        ),
    };
    let mut resp = plain(status, msg);
    if v2 {
        let hs = resp.headers_mut();
        let n = |v: u64| HeaderValue::from_str(&v.to_string()).expect("digits");
        hs.insert(
            "X-Prometheus-Remote-Write-Samples-Written",
            n(stats.samples),
        );
        hs.insert(
            "X-Prometheus-Remote-Write-Histograms-Written",
            n(stats.histograms),
        );
        hs.insert(
            "X-Prometheus-Remote-Write-Exemplars-Written",
            n(stats.exemplars),
        );
    }
    resp
}

/// `google.rpc.Status`, the OTLP error body.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn otlp_response(json_ct: bool, resp: ExportMetricsServiceResponse) -> Response {
    use prost::Message;
    let (ct, body) = if json_ct {
        let body = match resp.partial_success {
            Some(p) => json!({"partialSuccess": {
                "rejectedDataPoints": p.rejected_data_points.to_string(), "errorMessage": p.error_message}}),
            None => json!({}),
        };
        (
            "application/json",
            serde_json::to_vec(&body).unwrap_or_default(),
        )
    } else {
        ("application/x-protobuf", resp.encode_to_vec())
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, ct)], body).into_response()
}

/// An OTLP failure: `google.rpc.Status` in the request's encoding; the message names the tenant.
fn otlp_error(json_ct: bool, e: &Error, tenant: &TenantId) -> Response {
    use prost::Message;
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    // gRPC codes: INVALID_ARGUMENT 3, RESOURCE_EXHAUSTED 8, INTERNAL 13.
    let code = match status.as_u16() {
        400 | 413 | 415 => 3,
        429 => 8,
        _ => 13,
    };
    let message = format!("{e} (tenant {tenant})");
    let (ct, body) = if json_ct {
        (
            "application/json",
            serde_json::to_vec(&json!({"code": code, "message": message})).unwrap_or_default(),
        )
    } else {
        (
            "application/x-protobuf",
            RpcStatus { code, message }.encode_to_vec(),
        )
    };
    (status, [(header::CONTENT_TYPE, ct)], body).into_response()
}

/// Ingests a translated OTLP batch for `tenant` (shared by OTLP/HTTP and OTLP/gRPC) and returns the
/// OTLP response: `partial_success` counts points rejected by translation and by the store.
pub async fn ingest_otlp(
    api: &MetricsApi,
    tenant: &TenantId,
    mut decoded: otlp::OtlpDecoded,
) -> Result<ExportMetricsServiceResponse, Error> {
    if api.cfg.otlp_delta == common::config::OtlpDeltaPolicy::Convert
        && !decoded.delta_series.is_empty()
    {
        let max = api.overrides.get(tenant).max_active_series as usize;
        let mut deltas = api.deltas.lock();
        let acc = deltas
            .entry(tenant.clone())
            .or_insert_with(|| otlp::DeltaAccumulator::new(max));
        let dropped = acc.apply(&mut decoded.batch, &decoded.delta_series);
        if dropped > 0 {
            decoded.rejected += dropped;
            decoded.errors.push(format!(
                "delta conversion tracks at most {max} series (tenant {tenant}, limit max_active_series)"
            ));
        }
    }
    let batch = std::mem::take(&mut decoded.batch);
    rate_check(
        api,
        tenant,
        (batch.sample_count() + batch.histogram_count()) as u64,
    )?;
    let o = api.store.write(tenant, batch).await?;
    decoded.rejected += o.rejected_count as u64;
    decoded.errors.extend(o.rejected);
    decoded.errors.truncate(otlp::MAX_ERRORS);
    Ok(decoded.response())
}

async fn otlp_handler(
    method: Method,
    Extension(tenant): Extension<TenantId>,
    State(api): State<MetricsApi>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    debug_assert_eq!(method, Method::POST);
    let hv = |n: header::HeaderName| h.get(n).and_then(|v| v.to_str().ok());
    let json_ct = hv(header::CONTENT_TYPE).is_some_and(|c| c.starts_with("application/json"));
    let limits = api.overrides.get(&tenant);
    let decoded = match otlp::decode_http(
        &body,
        hv(header::CONTENT_TYPE),
        hv(header::CONTENT_ENCODING),
        &limits,
        &api.cfg,
    ) {
        Ok(d) => d,
        Err(e) => return otlp_error(json_ct, &e, &tenant),
    };
    match ingest_otlp(&api, &tenant, decoded).await {
        Ok(resp) => otlp_response(json_ct, resp),
        Err(e) => otlp_error(json_ct, &e, &tenant),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_label_names() {
        assert_eq!(unescape_label_name("job"), "job");
        assert_eq!(
            unescape_label_name("U__http_2e_status__code"),
            "http.status_code"
        );
    }

    #[test]
    fn params_merge_query_and_form() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let p = Params::new(
            Some("match[]=up&start=1"),
            &h,
            b"match%5B%5D=a%7Bb%3D%22c%22%7D",
        );
        assert_eq!(p.all("match[]"), ["up", "a{b=\"c\"}"]);
        assert_eq!(p.get("start"), Some("1"));
    }

    #[test]
    fn match_requires_non_empty_matcher() {
        assert!(parse_match(&["{a=\"\"}"]).is_err());
        assert!(parse_match(&["rate(x[5m])"]).is_err());
        let s = parse_match(&["up{job=~\"a.*\"}"]).unwrap();
        assert_eq!(s[0].len(), 2);
    }
}
