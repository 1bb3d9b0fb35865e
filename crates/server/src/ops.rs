//! Operational endpoints: `/ready`, `/metrics`, `/config`, `/api/v1/status/buildinfo`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;

use crate::telemetry::{gauge, Telemetry};

/// Version string of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// State of the ops endpoints.
#[derive(Clone)]
pub struct Ops {
    /// Effective config as redacted YAML.
    pub config_yaml: Arc<String>,
    /// Request counters.
    pub telemetry: Arc<Telemetry>,
    /// The metrics store, for gauges.
    pub store: metrics::tsdb::MetricsStore,
    /// The log store, for gauges.
    pub logs: logs::store::LogStore,
    /// The trace store, for gauges.
    pub traces: traces::store::TraceStore,
}

/// Ops routes (no tenant needed).
pub fn routes(ops: Ops) -> Router {
    Router::new()
        .route("/ready", get(|| async { "ready\n" }))
        .route("/metrics", get(own_metrics))
        .route("/config", get(config))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/prometheus/api/v1/status/buildinfo", get(buildinfo))
        .route("/ingester/flush", axum::routing::post(flush))
        .with_state(ops)
}

/// Cuts every tenant's whole head into blocks now (Mimir's `/ingester/flush`); used before moving a node.
async fn flush(State(o): State<Ops>) -> Response {
    let r = async {
        o.store
            .flush_all_to_blocks()
            .await
            .map_err(|e| e.to_string())?;
        o.logs
            .flush_all_to_blocks()
            .await
            .map_err(|e| e.to_string())?;
        o.traces
            .flush_all_to_blocks()
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    match r {
        Ok(()) => (axum::http::StatusCode::NO_CONTENT, "").into_response(),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

async fn config(State(o): State<Ops>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/yaml; charset=utf-8")],
        o.config_yaml.to_string(),
    )
        .into_response()
}

async fn buildinfo() -> Response {
    axum::Json(json!({
        "status": "success",
        "data": {
            "version": VERSION,
            "revision": option_env!("HEIMDALL_GIT_REVISION").unwrap_or("unknown"),
            "branch": "main",
            "buildUser": "heimdall",
            "buildDate": "unknown",
            "goVersion": "rust",
            "application": "heimdall",
        }
    }))
    .into_response()
}

async fn own_metrics(State(o): State<Ops>) -> Response {
    let mut out = String::new();
    o.telemetry.render(&mut out);
    let s = o.store.stats();
    let rows = |f: &dyn Fn(&metrics::tsdb::TenantStats) -> f64| -> Vec<(Vec<(&str, String)>, f64)> {
        s.tenants
            .iter()
            .map(|(t, st)| (vec![("tenant", t.to_string())], f(st)))
            .collect()
    };
    gauge(
        &mut out,
        "heimdall_metrics_active_series",
        "Series in the head.",
        &rows(&|t| t.active_series as f64),
    );
    gauge(
        &mut out,
        "heimdall_metrics_head_samples",
        "Samples in the head.",
        &rows(&|t| t.head_samples as f64),
    );
    gauge(
        &mut out,
        "heimdall_metrics_wal_bytes",
        "Bytes of WAL on disk.",
        &rows(&|t| t.wal_bytes as f64),
    );
    gauge(
        &mut out,
        "heimdall_metrics_blocks",
        "Blocks in the object store.",
        &rows(&|t| t.blocks as f64),
    );
    gauge(
        &mut out,
        "heimdall_metrics_block_bytes",
        "Bytes of blocks in the object store.",
        &rows(&|t| t.block_bytes as f64),
    );
    let ls = o.logs.stats();
    let log_rows =
        |f: &dyn Fn(&logs::store::TenantLogStats) -> f64| -> Vec<(Vec<(&str, String)>, f64)> {
            ls.tenants
                .iter()
                .map(|(t, st)| (vec![("tenant", t.to_string())], f(st)))
                .collect()
        };
    for (name, help, f) in [
        (
            "heimdall_logs_streams",
            "Log streams in the head.",
            (|t: &logs::store::TenantLogStats| t.streams as f64)
                as fn(&logs::store::TenantLogStats) -> f64,
        ),
        (
            "heimdall_logs_head_entries",
            "Log entries in the head.",
            |t| t.head_entries as f64,
        ),
        (
            "heimdall_logs_head_bytes",
            "Line bytes in the head (uncompressed).",
            |t| t.head_bytes as f64,
        ),
        (
            "heimdall_logs_wal_bytes",
            "Bytes of log WAL on disk.",
            |t| t.wal_bytes as f64,
        ),
        (
            "heimdall_logs_blocks",
            "Log blocks in the object store.",
            |t| t.blocks as f64,
        ),
        (
            "heimdall_logs_block_bytes",
            "Bytes of log blocks in the object store.",
            |t| t.block_bytes as f64,
        ),
    ] {
        gauge(&mut out, name, help, &log_rows(&f));
    }
    let ts = o.traces.stats();
    let trace_rows =
        |f: &dyn Fn(&traces::store::TenantTraceStats) -> f64| -> Vec<(Vec<(&str, String)>, f64)> {
            ts.tenants
                .iter()
                .map(|(t, st)| (vec![("tenant", t.to_string())], f(st)))
                .collect()
        };
    type TraceStat = fn(&traces::store::TenantTraceStats) -> f64;
    let trace_gauges: [(&str, &str, TraceStat); 5] = [
        ("heimdall_traces_head_traces", "Traces in the head.", |t| {
            t.head_traces as f64
        }),
        ("heimdall_traces_head_spans", "Spans in the head.", |t| {
            t.head_spans as f64
        }),
        (
            "heimdall_traces_wal_bytes",
            "Bytes of trace WAL on disk.",
            |t| t.wal_bytes as f64,
        ),
        (
            "heimdall_traces_blocks",
            "Trace blocks in the object store.",
            |t| t.blocks as f64,
        ),
        (
            "heimdall_traces_block_bytes",
            "Bytes of trace blocks in the object store.",
            |t| t.block_bytes as f64,
        ),
    ];
    for (name, help, f) in trace_gauges {
        gauge(&mut out, name, help, &trace_rows(&f));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
