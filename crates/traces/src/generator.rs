//! The metrics generator: span metrics and service graphs computed from ingested spans, as Tempo's
//! metrics-generator names and labels them, written into the same tenant's metrics through a
//! [`SampleSink`] (the server connects it to the metrics store; this crate does not depend on it).
//!
//! Counters and histograms are cumulative per tenant in memory and written with the current time
//! on every batch that touches them; a restart starts them again at 0, which `rate()` reads as a
//! counter reset. Exemplars carry `traceID` (hex), as Tempo's do.

use std::collections::HashMap;
use std::sync::Arc;

use common::TenantId;
use parking_lot::Mutex;
use proto::otlp::tonic::common::v1::any_value;

use crate::api::SpanObserver;
use crate::model::{Span, SpanId, TraceId};

/// One sample the generator writes.
#[derive(Debug, Clone, PartialEq)]
pub struct GenSample {
    /// Labels including `__name__`, sorted by name.
    pub labels: Vec<(String, String)>,
    /// Value (cumulative).
    pub value: f64,
    /// Timestamp, ms.
    pub t_ms: i64,
    /// Exemplar: (`traceID` hex, observed value).
    pub exemplar: Option<(String, f64)>,
}

/// Where generated samples go.
pub trait SampleSink: Send + Sync {
    /// Writes `samples` into `tenant`'s metrics.
    fn write(&self, tenant: &TenantId, samples: Vec<GenSample>);
}

/// Span-metrics latency buckets (seconds): 0.002 × 2^k, k = 0..13.
pub fn span_buckets() -> Vec<f64> {
    (0..14).map(|k| 0.002 * f64::from(1u32 << k)).collect()
}

/// Service-graph latency buckets (seconds): 0.1 × 2^k, k = 0..7.
pub fn graph_buckets() -> Vec<f64> {
    (0..8).map(|k| 0.1 * f64::from(1u32 << k)).collect()
}

/// How long an unpaired client or server span waits for its other half.
const PAIR_WAIT_NS: u64 = 10_000_000_000;
/// Most unpaired spans held per tenant.
const MAX_PENDING: usize = 10_000;
/// Span attributes naming an uninstrumented peer (virtual node), in order of preference.
const PEER_ATTRIBUTES: &[&str] = &["peer.service", "db.name", "db.system", "db.system.name"];

const KINDS: [&str; 6] = [
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];
const STATUSES: [&str; 3] = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

#[derive(Default)]
struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

/// Half of a service-graph edge waiting for the other half.
struct Half {
    service: String,
    duration_s: f64,
    failed: bool,
    peer: Option<String>,
    database: bool,
    trace_id: TraceId,
    seen_ns: u64,
}

#[derive(Default)]
struct TenantState {
    /// Timestamp of the last write (writes are strictly increasing per tenant).
    last_t_ms: i64,
    counters: HashMap<Vec<(String, String)>, f64>,
    histograms: HashMap<(String, Vec<(String, String)>), Histogram>,
    /// CLIENT (and PRODUCER) spans by their span id, waiting for a server child.
    clients: HashMap<(TraceId, SpanId), Half>,
    /// SERVER (and CONSUMER) spans by their parent id, waiting for the client.
    servers: HashMap<(TraceId, SpanId), Half>,
}

/// The generator: a [`SpanObserver`] that writes span metrics and service graphs.
pub struct Generator {
    sink: Arc<dyn SampleSink>,
    tenants: Mutex<HashMap<TenantId, TenantState>>,
    span_buckets: Vec<f64>,
    graph_buckets: Vec<f64>,
}

fn attr_str(s: &Span, key: &str) -> Option<String> {
    s.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(x)) if !x.is_empty() => Some(x.clone()),
            _ => None,
        })
}

fn labels(name: &str, pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.push(("__name__".into(), name.into()));
    v.sort();
    v
}

impl Generator {
    /// A generator with Tempo's default buckets.
    pub fn new(sink: Arc<dyn SampleSink>) -> Self {
        Self {
            sink,
            tenants: Mutex::new(HashMap::new()),
            span_buckets: span_buckets(),
            graph_buckets: graph_buckets(),
        }
    }

    /// Processes spans of `tenant` at wall-clock `now_ns`, writes the touched series to the sink
    /// (under the tenant lock, so writes reach the sink in order) and returns them.
    pub fn process(
        &self,
        tenant: &TenantId,
        spans: &[Span],
        now_ns: u64,
        processors: &[String],
    ) -> Vec<GenSample> {
        let span_metrics = processors.iter().any(|p| p == "span-metrics");
        let graphs = processors.iter().any(|p| p == "service-graphs");
        let mut all = self.tenants.lock();
        let st = all.entry(tenant.clone()).or_default();
        let t_ms = ((now_ns / 1_000_000) as i64).max(st.last_t_ms + 1);
        st.last_t_ms = t_ms;
        let mut touched_c: Vec<Vec<(String, String)>> = Vec::new();
        let mut touched_h: Vec<(String, Vec<(String, String)>)> = Vec::new();
        let mut exemplars: HashMap<Vec<(String, String)>, (String, f64)> = HashMap::new();
        let mut count = |st: &mut TenantState, l: Vec<(String, String)>, by: f64| {
            *st.counters.entry(l.clone()).or_default() += by;
            touched_c.push(l);
        };
        let mut observe = |st: &mut TenantState,
                           name: &str,
                           l: Vec<(String, String)>,
                           bounds: &[f64],
                           v: f64,
                           trace: &TraceId| {
            let h = st
                .histograms
                .entry((name.to_string(), l.clone()))
                .or_insert_with(|| Histogram {
                    buckets: vec![0; bounds.len()],
                    ..Default::default()
                });
            for (i, b) in bounds.iter().enumerate() {
                if v <= *b {
                    h.buckets[i] += 1;
                }
            }
            h.count += 1;
            h.sum += v;
            let mut bl = l.clone();
            bl.push(("__name__".into(), format!("{name}_bucket")));
            bl.sort();
            exemplars.insert(bl, (hex::encode(trace), v));
            touched_h.push((name.to_string(), l));
        };
        for s in spans {
            let service = s.origin.service_name();
            let kind = KINDS.get(s.kind as usize).copied().unwrap_or(KINDS[0]);
            let status = STATUSES
                .get(s.status_code as usize)
                .copied()
                .unwrap_or(STATUSES[0]);
            let dims = [
                ("service", service),
                ("span_kind", kind),
                ("span_name", s.name.as_str()),
                ("status_code", status),
            ];
            let secs = s.duration_ns() as f64 / 1e9;
            if span_metrics {
                count(st, labels("traces_spanmetrics_calls_total", &dims), 1.0);
                let size = prost::Message::encoded_len(&crate::tempo_json::to_otlp(s)) as f64;
                count(st, labels("traces_spanmetrics_size_total", &dims), size);
                let base: Vec<(String, String)> = dims
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                observe(
                    st,
                    "traces_spanmetrics_latency",
                    base,
                    &self.span_buckets,
                    secs,
                    &s.trace_id,
                );
            }
            if !graphs {
                continue;
            }
            // Service graph halves.
            let peer = PEER_ATTRIBUTES.iter().find_map(|a| attr_str(s, a));
            let database = ["db.namespace", "db.name", "db.system", "db.system.name"]
                .iter()
                .any(|a| attr_str(s, a).is_some());
            let half = Half {
                service: service.to_string(),
                duration_s: secs,
                failed: s.status_code == 2,
                peer,
                database,
                trace_id: s.trace_id,
                seen_ns: now_ns,
            };
            match s.kind {
                3 | 4 => {
                    let key = (s.trace_id, s.span_id);
                    match st.servers.remove(&key) {
                        Some(server) => edge(
                            st,
                            &half,
                            &server,
                            "",
                            &mut count,
                            &mut observe,
                            &self.graph_buckets,
                        ),
                        None if st.clients.len() < MAX_PENDING => {
                            st.clients.insert(key, half);
                        }
                        None => {}
                    }
                }
                2 | 5 => {
                    if s.is_root() {
                        // Nobody instrumented called it: the client is a virtual node.
                        let client = Half {
                            service: half.peer.clone().unwrap_or_else(|| "user".into()),
                            duration_s: 0.0,
                            failed: false,
                            peer: None,
                            database: false,
                            trace_id: s.trace_id,
                            seen_ns: now_ns,
                        };
                        edge(
                            st,
                            &client,
                            &half,
                            "virtual_node",
                            &mut count,
                            &mut observe,
                            &self.graph_buckets,
                        );
                        continue;
                    }
                    let key = (s.trace_id, s.parent_span_id);
                    let ctype = if s.kind == 5 { "messaging_system" } else { "" };
                    match st.clients.remove(&key) {
                        Some(client) => edge(
                            st,
                            &client,
                            &half,
                            ctype,
                            &mut count,
                            &mut observe,
                            &self.graph_buckets,
                        ),
                        None if st.servers.len() < MAX_PENDING => {
                            st.servers.insert(key, half);
                        }
                        None => {}
                    }
                }
                _ => {}
            }
        }
        // Clients that waited long enough without a server: a virtual (or database) node when
        // they name their peer; otherwise dropped. Servers without a client are dropped.
        let expired: Vec<(TraceId, SpanId)> = st
            .clients
            .iter()
            .filter(|(_, h)| now_ns.saturating_sub(h.seen_ns) > PAIR_WAIT_NS)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            if let Some(c) = st.clients.remove(&k) {
                if let Some(peer) = c.peer.clone() {
                    let server = Half {
                        service: peer,
                        duration_s: 0.0,
                        failed: false,
                        peer: None,
                        database: false,
                        trace_id: c.trace_id,
                        seen_ns: now_ns,
                    };
                    let ctype = if c.database {
                        "database"
                    } else {
                        "virtual_node"
                    };
                    edge(
                        st,
                        &c,
                        &server,
                        ctype,
                        &mut count,
                        &mut observe,
                        &self.graph_buckets,
                    );
                }
            }
        }
        st.servers
            .retain(|_, h| now_ns.saturating_sub(h.seen_ns) <= PAIR_WAIT_NS);

        // Current values of every touched series.
        let mut out = Vec::new();
        touched_c.sort();
        touched_c.dedup();
        for l in touched_c {
            let value = st.counters[&l];
            out.push(GenSample {
                labels: l,
                value,
                t_ms,
                exemplar: None,
            });
        }
        touched_h.sort();
        touched_h.dedup();
        for (name, l) in touched_h {
            let h = &st.histograms[&(name.clone(), l.clone())];
            let bounds = if name.starts_with("traces_spanmetrics") {
                &self.span_buckets
            } else {
                &self.graph_buckets
            };
            let with = |suffix: &str, extra: Option<(&str, String)>| {
                let mut v = l.clone();
                v.push(("__name__".into(), format!("{name}{suffix}")));
                if let Some((k, val)) = extra {
                    v.push((k.into(), val));
                }
                v.sort();
                v
            };
            for (i, b) in bounds.iter().enumerate() {
                let lbl = with("_bucket", Some(("le", common::gofmt::format_f(*b))));
                out.push(GenSample {
                    labels: lbl,
                    value: h.buckets[i] as f64,
                    t_ms,
                    exemplar: None,
                });
            }
            let inf = with("_bucket", Some(("le", "+Inf".into())));
            let ex_key = with("_bucket", None);
            out.push(GenSample {
                labels: inf,
                value: h.count as f64,
                t_ms,
                exemplar: exemplars.get(&ex_key).cloned(),
            });
            out.push(GenSample {
                labels: with("_count", None),
                value: h.count as f64,
                t_ms,
                exemplar: None,
            });
            out.push(GenSample {
                labels: with("_sum", None),
                value: h.sum,
                t_ms,
                exemplar: None,
            });
        }
        if !out.is_empty() {
            self.sink.write(tenant, out.clone());
        }
        drop(all);
        out
    }
}

/// Records one service-graph edge.
fn edge(
    st: &mut TenantState,
    client: &Half,
    server: &Half,
    connection_type: &str,
    count: &mut impl FnMut(&mut TenantState, Vec<(String, String)>, f64),
    observe: &mut impl FnMut(&mut TenantState, &str, Vec<(String, String)>, &[f64], f64, &TraceId),
    bounds: &[f64],
) {
    let dims = [
        ("client", client.service.as_str()),
        ("server", server.service.as_str()),
        ("connection_type", connection_type),
    ];
    count(st, labels("traces_service_graph_request_total", &dims), 1.0);
    if client.failed || server.failed {
        count(
            st,
            labels("traces_service_graph_request_failed_total", &dims),
            1.0,
        );
    }
    let base: Vec<(String, String)> = dims
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    observe(
        st,
        "traces_service_graph_request_server_seconds",
        base.clone(),
        bounds,
        server.duration_s,
        &server.trace_id,
    );
    observe(
        st,
        "traces_service_graph_request_client_seconds",
        base,
        bounds,
        client.duration_s,
        &client.trace_id,
    );
}

impl SpanObserver for Generator {
    fn observe(&self, tenant: &TenantId, spans: &[Span], processors: &[String]) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        self.process(tenant, spans, now, processors);
    }
}

#[cfg(test)]
mod tests {
    use proto::otlp::tonic::common::v1::{AnyValue, KeyValue};
    use proto::otlp::tonic::resource::v1::Resource;

    use super::*;
    use crate::model::SpanOrigin;

    fn all() -> Vec<String> {
        vec!["span-metrics".into(), "service-graphs".into()]
    }

    struct Nop;
    impl SampleSink for Nop {
        fn write(&self, _: &TenantId, _: Vec<GenSample>) {}
    }

    fn origin(service: &str) -> Arc<SpanOrigin> {
        Arc::new(SpanOrigin {
            resource: Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(service.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            },
            ..Default::default()
        })
    }

    fn span(service: &str, id: u8, parent: u8, kind: i32, ms: u64, status: i32) -> Span {
        Span {
            trace_id: [7; 16],
            span_id: [id; 8],
            parent_span_id: [parent; 8],
            trace_state: String::new(),
            flags: 0,
            name: format!("op{id}"),
            kind,
            start_ns: 1_000_000_000,
            end_ns: 1_000_000_000 + ms * 1_000_000,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: Vec::new(),
            dropped_events_count: 0,
            links: Vec::new(),
            dropped_links_count: 0,
            status_code: status,
            status_message: String::new(),
            origin: origin(service),
        }
    }

    fn get<'a>(out: &'a [GenSample], name: &str, pairs: &[(&str, &str)]) -> Option<&'a GenSample> {
        out.iter().find(|s| {
            s.labels.iter().any(|(k, v)| k == "__name__" && v == name)
                && pairs
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
        })
    }

    #[test]
    fn span_metrics_and_a_service_graph_edge() {
        let g = Generator::new(Arc::new(Nop));
        let t = TenantId::new("t").unwrap();
        // frontend (root server) → frontend client → backend server (error, 300 ms).
        let spans = vec![
            span("frontend", 1, 0, 2, 500, 0),
            span("frontend", 2, 1, 3, 400, 0),
            span("backend", 3, 2, 2, 300, 2),
        ];
        let out = g.process(&t, &spans, 5_000_000_000, &all());
        let calls = get(
            &out,
            "traces_spanmetrics_calls_total",
            &[
                ("service", "backend"),
                ("span_kind", "SPAN_KIND_SERVER"),
                ("status_code", "STATUS_CODE_ERROR"),
                ("span_name", "op3"),
            ],
        )
        .unwrap();
        assert_eq!(calls.value, 1.0);
        // 300 ms falls in the 0.512 s bucket but not the 0.256 s one.
        let b = |le: &str| {
            get(
                &out,
                "traces_spanmetrics_latency_bucket",
                &[("service", "backend"), ("le", le)],
            )
            .unwrap()
            .value
        };
        assert_eq!(b("0.256"), 0.0);
        assert_eq!(b("0.512"), 1.0);
        assert_eq!(b("+Inf"), 1.0);
        let inf = get(
            &out,
            "traces_spanmetrics_latency_bucket",
            &[("service", "backend"), ("le", "+Inf")],
        )
        .unwrap();
        assert_eq!(inf.exemplar.as_ref().unwrap().0, hex::encode([7u8; 16]));
        let edge = |client: &str, server: &str| {
            get(
                &out,
                "traces_service_graph_request_total",
                &[("client", client), ("server", server)],
            )
            .map(|s| s.value)
        };
        assert_eq!(edge("frontend", "backend"), Some(1.0));
        assert_eq!(edge("user", "frontend"), Some(1.0));
        assert_eq!(
            get(
                &out,
                "traces_service_graph_request_failed_total",
                &[("client", "frontend"), ("server", "backend")]
            )
            .map(|s| s.value),
            Some(1.0)
        );
        let srv = get(
            &out,
            "traces_service_graph_request_server_seconds_sum",
            &[("client", "frontend")],
        )
        .unwrap();
        assert!((srv.value - 0.3).abs() < 1e-9);
        // Counters are cumulative across batches.
        let out = g.process(&t, &spans[2..], 6_000_000_000, &all());
        let calls = get(
            &out,
            "traces_spanmetrics_calls_total",
            &[("service", "backend")],
        )
        .unwrap();
        assert_eq!(calls.value, 2.0);
    }

    #[test]
    fn unpaired_client_with_peer_becomes_a_virtual_node() {
        let g = Generator::new(Arc::new(Nop));
        let t = TenantId::new("t").unwrap();
        let mut c = span("api", 2, 1, 3, 20, 0);
        c.attributes.push(KeyValue {
            key: "db.system".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("postgresql".into())),
            }),
            ..Default::default()
        });
        g.process(&t, &[c], 1_000_000_000, &all());
        let out = g.process(&t, &[], 20_000_000_000, &all());
        let e = get(
            &out,
            "traces_service_graph_request_total",
            &[
                ("client", "api"),
                ("server", "postgresql"),
                ("connection_type", "database"),
            ],
        );
        assert_eq!(e.map(|s| s.value), Some(1.0));
    }
}
