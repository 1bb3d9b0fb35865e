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
    match o.store.flush_all_to_blocks().await {
        Ok(()) => (axum::http::StatusCode::NO_CONTENT, "").into_response(),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
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
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
