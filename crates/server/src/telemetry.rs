//! heimdall's own metrics, served at `/metrics` in the Prometheus text format. Deliberately tiny:
//! a few counters keyed by label values, plus gauges computed at scrape time by the caller.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use parking_lot::Mutex;
use std::sync::Arc;

#[derive(Default)]
struct RequestStats {
    count: u64,
    seconds: f64,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Telemetry {
    requests: Mutex<BTreeMap<(String, u16), RequestStats>>,
}

impl Telemetry {
    /// Records one finished HTTP request.
    pub fn observe(&self, route: &str, status: u16, seconds: f64) {
        let mut m = self.requests.lock();
        let e = m.entry((route.to_string(), status)).or_default();
        e.count += 1;
        e.seconds += seconds;
    }

    /// Appends the counters in text format to `out`.
    pub fn render(&self, out: &mut String) {
        let m = self.requests.lock();
        out.push_str(
            "# HELP heimdall_http_requests_total HTTP requests by route and status code.\n",
        );
        out.push_str("# TYPE heimdall_http_requests_total counter\n");
        for ((route, code), s) in m.iter() {
            let _ = writeln!(
                out,
                "heimdall_http_requests_total{{route={route:?},code=\"{code}\"}} {}",
                s.count
            );
        }
        out.push_str("# HELP heimdall_http_request_duration_seconds_total Time spent serving HTTP requests.\n");
        out.push_str("# TYPE heimdall_http_request_duration_seconds_total counter\n");
        for ((route, code), s) in m.iter() {
            let _ = writeln!(
                out,
                "heimdall_http_request_duration_seconds_total{{route={route:?},code=\"{code}\"}} {}",
                s.seconds
            );
        }
    }
}

/// Middleware that times every request by its matched route.
pub async fn track(State(t): State<Arc<Telemetry>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let start = Instant::now();
    let resp = next.run(req).await;
    t.observe(
        &route,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

/// Appends one gauge family to `out`.
pub fn gauge(out: &mut String, name: &str, help: &str, rows: &[(Vec<(&str, String)>, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (labels, v) in rows {
        let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        let _ = writeln!(out, "{name}{{{}}} {v}", l.join(","));
    }
}
