//! Zipkin v2 JSON ingest (`POST /api/v2/spans`): a list of Zipkin spans mapped to OTLP the way the
//! OpenTelemetry Collector's zipkin receiver maps them (local endpoint service → `service.name`,
//! remote endpoint service → `peer.service`, tags → attributes, `error` tag → error status,
//! annotations → events; microsecond times → nanoseconds).

use std::collections::{BTreeMap, HashMap};

use proto::otlp::tonic::collector::trace::v1::ExportTraceServiceRequest;
use proto::otlp::tonic::common::v1::{any_value, AnyValue, KeyValue};
use proto::otlp::tonic::resource::v1::Resource;
use proto::otlp::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use serde::Deserialize;

use crate::Error;

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ZSpan {
    trace_id: String,
    id: String,
    parent_id: Option<String>,
    name: Option<String>,
    kind: Option<String>,
    timestamp: Option<u64>,
    duration: Option<u64>,
    local_endpoint: Option<ZEndpoint>,
    remote_endpoint: Option<ZEndpoint>,
    tags: BTreeMap<String, String>,
    annotations: Vec<ZAnnotation>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ZEndpoint {
    service_name: Option<String>,
    ipv4: Option<String>,
    ipv6: Option<String>,
    port: Option<u16>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ZAnnotation {
    timestamp: u64,
    value: String,
}

fn str_kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_string())),
        }),
        ..Default::default()
    }
}

/// Decodes a hex id of up to `N` bytes, left-padded with zeros (Zipkin allows 64-bit trace ids).
fn hex_id<const N: usize>(s: &str, what: &str) -> Result<Vec<u8>, Error> {
    if s.is_empty() || s.len() > 2 * N {
        return Err(Error::BadRequest(format!("invalid zipkin {what} {s:?}")));
    }
    let padded = format!("{s:0>width$}", width = 2 * N);
    hex::decode(padded).map_err(|_| Error::BadRequest(format!("invalid zipkin {what} {s:?}")))
}

/// Parses a Zipkin v2 JSON body into an OTLP request (one resource per local service).
pub fn decode(body: &[u8]) -> Result<ExportTraceServiceRequest, Error> {
    let spans: Vec<ZSpan> = serde_json::from_slice(body)
        .map_err(|e| Error::BadRequest(format!("failed to parse zipkin v2 spans: {e}")))?;
    let mut by_service: HashMap<String, Vec<Span>> = HashMap::new();
    for z in spans {
        let trace_id = hex_id::<16>(&z.trace_id, "traceId")?;
        let span_id = hex_id::<8>(&z.id, "id")?;
        let parent_span_id = match z.parent_id.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => hex_id::<8>(p, "parentId")?,
            None => Vec::new(),
        };
        let kind = match z.kind.as_deref() {
            Some("SERVER") => span::SpanKind::Server,
            Some("CLIENT") => span::SpanKind::Client,
            Some("PRODUCER") => span::SpanKind::Producer,
            Some("CONSUMER") => span::SpanKind::Consumer,
            _ => span::SpanKind::Internal,
        } as i32;
        let start = z.timestamp.unwrap_or(0).saturating_mul(1000);
        let end = start + z.duration.unwrap_or(0).saturating_mul(1000);
        let mut attributes: Vec<KeyValue> = Vec::new();
        let mut status = None;
        for (k, v) in &z.tags {
            if k == "error" {
                status = Some(Status {
                    code: 2,
                    message: if v == "true" {
                        String::new()
                    } else {
                        v.clone()
                    },
                });
                continue;
            }
            attributes.push(str_kv(k, v));
        }
        if let Some(r) = &z.remote_endpoint {
            if let Some(s) = r.service_name.as_deref().filter(|s| !s.is_empty()) {
                attributes.push(str_kv("peer.service", s));
            }
            if let Some(ip) = r.ipv4.as_deref().or(r.ipv6.as_deref()) {
                attributes.push(str_kv("net.peer.ip", ip));
            }
            if let Some(p) = r.port {
                attributes.push(KeyValue {
                    key: "net.peer.port".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::IntValue(i64::from(p))),
                    }),
                    ..Default::default()
                });
            }
        }
        let events = z
            .annotations
            .into_iter()
            .map(|a| span::Event {
                time_unix_nano: a.timestamp.saturating_mul(1000),
                name: a.value,
                ..Default::default()
            })
            .collect();
        let service = z
            .local_endpoint
            .as_ref()
            .and_then(|l| l.service_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown_service".into());
        by_service.entry(service).or_default().push(Span {
            trace_id,
            span_id,
            parent_span_id,
            name: z.name.unwrap_or_default(),
            kind,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes,
            events,
            status,
            ..Default::default()
        });
    }
    let mut services: Vec<(String, Vec<Span>)> = by_service.into_iter().collect();
    services.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(ExportTraceServiceRequest {
        resource_spans: services
            .into_iter()
            .map(|(service, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![str_kv("service.name", &service)],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipkin_v2_maps_like_the_collector() {
        let body = br#"[{"traceId":"5af7183fb1d4cf5f","id":"352bff9a74ca9ad2","parentId":"6b221d5bc9e6496c",
            "name":"get /api","kind":"SERVER","timestamp":1556604172355737,"duration":1431,
            "localEndpoint":{"serviceName":"backend","ipv4":"192.168.99.1","port":3306},
            "remoteEndpoint":{"serviceName":"frontend","ipv4":"172.19.0.2","port":58648},
            "tags":{"http.method":"GET","error":"boom"},"annotations":[{"timestamp":1556604172355800,"value":"ws"}]}]"#;
        let r = decode(body).unwrap();
        let rs = &r.resource_spans[0];
        assert_eq!(
            rs.resource.as_ref().unwrap().attributes[0],
            str_kv("service.name", "backend")
        );
        let s = &rs.scope_spans[0].spans[0];
        assert_eq!(s.trace_id.len(), 16);
        assert_eq!(&s.trace_id[..8], &[0; 8]);
        assert_eq!(s.kind, 2);
        assert_eq!(s.start_time_unix_nano, 1_556_604_172_355_737_000);
        assert_eq!(s.end_time_unix_nano - s.start_time_unix_nano, 1_431_000);
        assert_eq!(s.status.as_ref().unwrap().code, 2);
        assert!(s.attributes.contains(&str_kv("peer.service", "frontend")));
        assert_eq!(s.events[0].name, "ws");
        assert!(decode(br#"[{"traceId":"zz","id":"1"}]"#).is_err());
        assert!(decode(b"{").is_err());
    }
}
