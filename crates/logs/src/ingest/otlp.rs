//! OTLP logs → Loki streams, with Loki's default mapping: a fixed list of resource attributes
//! become stream labels, everything else (other resource attributes, scope, log attributes,
//! severity, trace context) becomes structured metadata; names are sanitised (`.` → `_`).

use std::collections::HashMap;

use common::decompress::decompress_http;
use common::{Label, Labels};
use prost::Message;
use proto::otlp::tonic::collector::logs::v1::ExportLogsServiceRequest;
use proto::otlp::tonic::common::v1::{any_value, AnyValue, KeyValue};
use proto::otlp_value::any_value_string;

use super::{decompress_err, RawStream};
use crate::model::{Entry, Metadata};
use crate::Error;

/// Resource attributes Loki indexes as stream labels by default.
pub const DEFAULT_INDEX_LABELS: &[&str] = &[
    "cloud.availability_zone",
    "cloud.region",
    "container.name",
    "deployment.environment.name",
    "k8s.cluster.name",
    "k8s.container.name",
    "k8s.cronjob.name",
    "k8s.daemonset.name",
    "k8s.deployment.name",
    "k8s.job.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.replicaset.name",
    "k8s.statefulset.name",
    "service.instance.id",
    "service.name",
    "service.namespace",
];

/// Decodes an OTLP/HTTP logs body (protobuf, or JSON by `Content-Type`; any supported encoding).
pub fn decode_http(
    body: &[u8],
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    max: usize,
) -> Result<ExportLogsServiceRequest, Error> {
    let media = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let raw = decompress_http(body, content_encoding, max).map_err(decompress_err)?;
    match media.as_str() {
        "" | "application/x-protobuf" | "application/protobuf" => {
            ExportLogsServiceRequest::decode(&*raw)
                .map_err(|e| Error::BadRequest(format!("failed to decode OTLP logs request: {e}")))
        }
        "application/json" => proto::otlp_json::decode_logs_request(&raw)
            .map_err(|e| Error::BadRequest(format!("failed to parse OTLP logs request: {e}"))),
        other => Err(Error::Limit {
            status: 415,
            msg: format!(
                "unsupported content type {other:?}; use application/x-protobuf or application/json"
            ),
        }),
    }
}

/// Sanitises an attribute name into a label name: every character outside `[a-zA-Z0-9_]`
/// becomes `_`, a leading digit gets a `_` prefix.
pub fn label_name(key: &str) -> String {
    let mut s: String = key
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
        s.insert(0, '_');
    }
    s
}

/// Flattens attributes into `(name, value)` pairs: nested maps join keys with `_`.
fn flatten(prefix: &str, attrs: &[KeyValue], out: &mut Metadata) {
    for kv in attrs {
        let name = if prefix.is_empty() {
            label_name(&kv.key)
        } else {
            format!("{prefix}_{}", label_name(&kv.key))
        };
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::KvlistValue(m)) => flatten(&name, &m.values, out),
            _ => out.push((name, any_value_string(kv.value.as_ref()))),
        }
    }
}

fn body_line(body: Option<&AnyValue>) -> String {
    any_value_string(body)
}

/// Maps a request to streams. `now_ns` stamps records without any timestamp.
pub fn to_streams(req: ExportLogsServiceRequest, now_ns: i64) -> Vec<RawStream> {
    let mut streams: Vec<RawStream> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for rl in req.resource_logs {
        let mut labels = Vec::new();
        let mut resource_meta = Metadata::new();
        if let Some(r) = &rl.resource {
            for kv in &r.attributes {
                if DEFAULT_INDEX_LABELS.contains(&kv.key.as_str()) {
                    let v = any_value_string(kv.value.as_ref());
                    if !v.is_empty() {
                        labels.push(Label::new(label_name(&kv.key), v));
                    }
                } else {
                    flatten("", std::slice::from_ref(kv), &mut resource_meta);
                }
            }
        }
        if !labels.iter().any(|l| l.name == "service_name") {
            labels.push(Label::new("service_name", "unknown_service"));
        }
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        labels.dedup_by(|a, b| a.name == b.name);
        let labels = Labels::from_sorted(labels);
        let slot = *index.entry(labels.clone()).or_insert_with(|| {
            streams.push(RawStream {
                labels: labels.clone(),
                entries: Vec::new(),
            });
            streams.len() - 1
        });
        for sl in rl.scope_logs {
            let mut scope_meta = Metadata::new();
            if let Some(s) = &sl.scope {
                if !s.name.is_empty() {
                    scope_meta.push(("scope_name".into(), s.name.clone()));
                }
                if !s.version.is_empty() {
                    scope_meta.push(("scope_version".into(), s.version.clone()));
                }
                if s.dropped_attributes_count != 0 {
                    scope_meta.push((
                        "scope_dropped_attributes_count".into(),
                        s.dropped_attributes_count.to_string(),
                    ));
                }
                flatten("", &s.attributes, &mut scope_meta);
            }
            for rec in sl.log_records {
                let ts = [rec.time_unix_nano, rec.observed_time_unix_nano]
                    .into_iter()
                    .find(|t| *t != 0)
                    .map_or(now_ns, |t| i64::try_from(t).unwrap_or(i64::MAX));
                let mut meta = resource_meta.clone();
                meta.extend(scope_meta.iter().cloned());
                flatten("", &rec.attributes, &mut meta);
                if rec.severity_number != 0 {
                    meta.push(("severity_number".into(), rec.severity_number.to_string()));
                }
                if !rec.severity_text.is_empty() {
                    meta.push(("severity_text".into(), rec.severity_text.clone()));
                }
                if rec.dropped_attributes_count != 0 {
                    meta.push((
                        "dropped_attributes_count".into(),
                        rec.dropped_attributes_count.to_string(),
                    ));
                }
                if rec.observed_time_unix_nano != 0 {
                    meta.push((
                        "observed_timestamp".into(),
                        rec.observed_time_unix_nano.to_string(),
                    ));
                }
                if rec.flags != 0 {
                    meta.push(("flags".into(), rec.flags.to_string()));
                }
                if !rec.trace_id.is_empty() {
                    meta.push(("trace_id".into(), hex::encode(&rec.trace_id)));
                }
                if !rec.span_id.is_empty() {
                    meta.push(("span_id".into(), hex::encode(&rec.span_id)));
                }
                if !rec.event_name.is_empty() {
                    meta.push(("event_name".into(), rec.event_name.clone()));
                }
                if rec.severity_number != 0 || !rec.severity_text.is_empty() {
                    let level = if rec.severity_text.is_empty() {
                        severity_level(rec.severity_number)
                    } else {
                        super::normalize_level(&rec.severity_text)
                    };
                    meta.push(("detected_level".into(), level.into()));
                }
                streams[slot].entries.push(Entry {
                    ts,
                    line: body_line(rec.body.as_ref()),
                    metadata: meta,
                });
            }
        }
    }
    streams.retain(|s| !s.entries.is_empty());
    streams
}

/// The OTLP/HTTP success response in the request's encoding; refused entries are reported in
/// `partial_success` (their count is not known exactly per record, so all refused entries of
/// the request are counted from the validation message).
pub fn response(json: bool, refused: Option<String>, total: usize) -> axum::response::Response {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    use proto::otlp::tonic::collector::logs::v1::{
        ExportLogsPartialSuccess, ExportLogsServiceResponse,
    };
    let partial = refused.map(|msg| {
        let rejected = msg
            .rsplit("total ignored: ")
            .next()
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or(total as i64);
        ExportLogsPartialSuccess {
            rejected_log_records: rejected,
            error_message: msg,
        }
    });
    if json {
        let body = match &partial {
            Some(p) => serde_json::json!({"partialSuccess": {
                "rejectedLogRecords": p.rejected_log_records.to_string(), "errorMessage": p.error_message}}),
            None => serde_json::json!({}),
        };
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    } else {
        let resp = ExportLogsServiceResponse {
            partial_success: partial,
        };
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            resp.encode_to_vec(),
        )
            .into_response()
    }
}

/// The level of an OTLP severity number (TRACE 1–4, DEBUG 5–8, INFO 9–12, WARN 13–16, ERROR
/// 17–20, FATAL 21–24).
pub fn severity_level(n: i32) -> &'static str {
    match n {
        1..=4 => "trace",
        5..=8 => "debug",
        9..=12 => "info",
        13..=16 => "warn",
        17..=20 => "error",
        21..=24 => "fatal",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use proto::otlp::tonic::common::v1::{InstrumentationScope, KeyValueList};
    use proto::otlp::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use proto::otlp::tonic::resource::v1::Resource;

    use super::*;

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.into())
    }

    #[test]
    fn loki_default_mapping() {
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", s("checkout")),
                        kv("k8s.namespace.name", s("shop")),
                        kv("host.name", s("node-1")),
                    ],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "lib".into(),
                        version: "1.0".into(),
                        ..Default::default()
                    }),
                    log_records: vec![LogRecord {
                        time_unix_nano: 5,
                        severity_number: 17,
                        severity_text: "ERROR".into(),
                        body: Some(AnyValue {
                            value: Some(s("payment failed")),
                        }),
                        attributes: vec![
                            kv("http.status_code", any_value::Value::IntValue(500)),
                            kv(
                                "user",
                                any_value::Value::KvlistValue(KeyValueList {
                                    values: vec![kv("id", s("u1"))],
                                }),
                            ),
                        ],
                        trace_id: vec![0xab; 16],
                        span_id: vec![0xcd; 8],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let out = to_streams(req, 99);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].labels.to_string(),
            r#"{k8s_namespace_name="shop", service_name="checkout"}"#
        );
        let e = &out[0].entries[0];
        assert_eq!(e.ts, 5);
        assert_eq!(e.line, "payment failed");
        let get = |k: &str| {
            e.metadata
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("host_name"), Some("node-1"));
        assert_eq!(get("scope_name"), Some("lib"));
        assert_eq!(get("http_status_code"), Some("500"));
        assert_eq!(get("user_id"), Some("u1"));
        assert_eq!(get("severity_text"), Some("ERROR"));
        assert_eq!(get("severity_number"), Some("17"));
        assert_eq!(get("trace_id"), Some("abababababababababababababababab"));
        assert_eq!(get("span_id"), Some("cdcdcdcdcdcdcdcd"));
        assert_eq!(get("detected_level"), Some("error"));
    }

    #[test]
    fn missing_service_name_and_timestamps() {
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        LogRecord {
                            observed_time_unix_nano: 7,
                            ..Default::default()
                        },
                        LogRecord::default(),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let out = to_streams(req, 99);
        assert_eq!(out[0].labels.get("service_name"), Some("unknown_service"));
        assert_eq!(out[0].entries[0].ts, 7);
        assert_eq!(out[0].entries[1].ts, 99);
    }
}
