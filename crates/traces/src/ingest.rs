//! OTLP trace ingest: decoding (protobuf or OTLP/JSON, any supported encoding, size-capped),
//! flattening `ResourceSpans` into [`Span`]s that share their resource/scope, and per-span
//! validation (ids, size) with Tempo-style reasons.

use std::sync::Arc;

use common::decompress::{decompress_http, DecompressError};
use prost::Message;
use proto::otlp::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use crate::model::{Span, SpanOrigin};
use crate::Error;

fn decompress_err(e: DecompressError) -> Error {
    match e.status() {
        400 => Error::BadRequest(e.to_string()),
        status => Error::Limit {
            status,
            msg: e.to_string(),
        },
    }
}

/// Whether an OTLP/HTTP body is JSON (else protobuf); other content types are 415.
pub fn is_json(content_type: Option<&str>) -> Result<bool, Error> {
    let media = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "" | "application/x-protobuf" | "application/protobuf" => Ok(false),
        "application/json" => Ok(true),
        other => Err(Error::Limit {
            status: 415,
            msg: format!(
                "unsupported content type {other:?}; use application/x-protobuf or application/json"
            ),
        }),
    }
}

/// Decodes an OTLP/HTTP traces body.
pub fn decode_http(
    body: &[u8],
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    max: usize,
) -> Result<ExportTraceServiceRequest, Error> {
    let json = is_json(content_type)?;
    let raw = decompress_http(body, content_encoding, max).map_err(decompress_err)?;
    if json {
        proto::otlp_json::decode_traces_request(&raw)
            .map_err(|e| Error::BadRequest(format!("failed to parse OTLP traces request: {e}")))
    } else {
        ExportTraceServiceRequest::decode(&*raw)
            .map_err(|e| Error::BadRequest(format!("failed to decode OTLP traces request: {e}")))
    }
}

/// Spans of a request, and what was refused.
#[derive(Debug, Default)]
pub struct Flattened {
    /// Valid spans.
    pub spans: Vec<Span>,
    /// Encoded bytes of the valid spans (for rate limits).
    pub bytes: usize,
    /// Spans refused.
    pub rejected: usize,
    /// Distinct reasons (at most [`MAX_ERRORS`]).
    pub errors: Vec<String>,
}

/// Most distinct error messages kept per request.
pub const MAX_ERRORS: usize = 10;

fn id<const N: usize>(b: &[u8]) -> Option<[u8; N]> {
    <[u8; N]>::try_from(b).ok()
}

/// Flattens a request into spans. Spans with an invalid trace or span id, or larger than
/// `max_span_bytes` (0 = unlimited), are refused.
pub fn flatten(req: ExportTraceServiceRequest, max_span_bytes: usize) -> Flattened {
    let mut out = Flattened::default();
    let note = |out: &mut Flattened, msg: String| {
        out.rejected += 1;
        if out.errors.len() < MAX_ERRORS && !out.errors.contains(&msg) {
            out.errors.push(msg);
        }
    };
    for rs in req.resource_spans {
        for ss in rs.scope_spans {
            let origin = Arc::new(SpanOrigin {
                resource: rs.resource.clone().unwrap_or_default(),
                resource_schema_url: rs.schema_url.clone(),
                scope: ss.scope.clone().unwrap_or_default(),
                scope_schema_url: ss.schema_url.clone(),
            });
            for s in ss.spans {
                let size = s.encoded_len();
                let (Some(trace_id), Some(span_id)) = (id::<16>(&s.trace_id), id::<8>(&s.span_id))
                else {
                    note(
                        &mut out,
                        format!(
                            "invalid span: trace id must be 16 bytes and span id 8 bytes (got {} and {})",
                            s.trace_id.len(),
                            s.span_id.len()
                        ),
                    );
                    continue;
                };
                if trace_id == [0; 16] || span_id == [0; 8] {
                    note(&mut out, "invalid span: all-zero trace or span id".into());
                    continue;
                }
                let parent = if s.parent_span_id.is_empty() {
                    Some([0; 8])
                } else {
                    id::<8>(&s.parent_span_id)
                };
                let Some(parent_span_id) = parent else {
                    note(
                        &mut out,
                        format!(
                            "invalid span: parent span id must be 8 bytes (got {})",
                            s.parent_span_id.len()
                        ),
                    );
                    continue;
                };
                if max_span_bytes > 0 && size > max_span_bytes {
                    note(
                        &mut out,
                        format!(
                            "span too large: {size} bytes exceeds max_bytes_per_span ({max_span_bytes})"
                        ),
                    );
                    continue;
                }
                out.bytes += size;
                let status = s.status.unwrap_or_default();
                out.spans.push(Span {
                    trace_id,
                    span_id,
                    parent_span_id,
                    trace_state: s.trace_state,
                    flags: s.flags,
                    name: s.name,
                    kind: s.kind,
                    start_ns: s.start_time_unix_nano,
                    end_ns: s.end_time_unix_nano,
                    attributes: s.attributes,
                    dropped_attributes_count: s.dropped_attributes_count,
                    events: s.events,
                    dropped_events_count: s.dropped_events_count,
                    links: s.links,
                    dropped_links_count: s.dropped_links_count,
                    status_code: status.code,
                    status_message: status.message,
                    origin: origin.clone(),
                });
            }
        }
    }
    out
}

/// The OTLP response: `partial_success` only when something was refused.
pub fn response(rejected: usize, errors: &[String]) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse {
        partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: rejected as i64,
            error_message: errors.join("; "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use proto::otlp::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use proto::otlp::tonic::resource::v1::Resource;
    use proto::otlp::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OSpan};

    use super::*;

    fn req(spans: Vec<OSpan>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("api".into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn flattens_and_validates() {
        let good = OSpan {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "GET /".into(),
            ..Default::default()
        };
        let bad_id = OSpan {
            trace_id: vec![1; 15],
            span_id: vec![2; 8],
            ..Default::default()
        };
        let zero = OSpan {
            trace_id: vec![0; 16],
            span_id: vec![2; 8],
            ..Default::default()
        };
        let big = OSpan {
            trace_id: vec![1; 16],
            span_id: vec![3; 8],
            name: "x".repeat(2000),
            ..Default::default()
        };
        let f = flatten(req(vec![good, bad_id, zero, big]), 1000);
        assert_eq!(f.spans.len(), 1);
        assert_eq!(f.rejected, 3);
        assert_eq!(f.spans[0].origin.service_name(), "api");
        assert!(f.spans[0].is_root());
        assert!(f.errors.iter().any(|e| e.contains("max_bytes_per_span")));
        let r = response(f.rejected, &f.errors);
        assert_eq!(r.partial_success.unwrap().rejected_spans, 3);
    }

    #[test]
    fn json_and_protobuf_bodies() {
        let pb = req(vec![OSpan {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            ..Default::default()
        }])
        .encode_to_vec();
        let r = decode_http(&pb, Some("application/x-protobuf"), None, 1 << 20).unwrap();
        assert_eq!(r.resource_spans.len(), 1);
        let e = decode_http(b"{}", Some("text/plain"), None, 1 << 20).unwrap_err();
        assert_eq!(e.status(), 415);
        let e = decode_http(&pb, None, None, 3).unwrap_err();
        assert_eq!(e.status(), 413);
        assert!(decode_http(b"{", Some("application/json"), None, 1 << 20).is_err());
    }
}
