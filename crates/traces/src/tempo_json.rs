//! Traces as Tempo returns them: OTLP `ResourceSpans` rebuilt from stored spans, and Tempo's own
//! JSON (gogo jsonpb: ids in base64, enums as names, 64-bit integers as strings, defaults
//! omitted), which is not OTLP/JSON.

use std::sync::Arc;

use base64::Engine as _;
use proto::otlp::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use proto::otlp::tonic::resource::v1::Resource;
use proto::otlp::tonic::trace::v1::{self as ot, ResourceSpans, ScopeSpans};
use serde_json::{json, Map, Value};

use crate::model::{Span, SpanOrigin};

/// Groups spans by resource and scope into OTLP `ResourceSpans` (spans ordered by start time).
pub fn resource_spans(spans: &[Span]) -> Vec<ResourceSpans> {
    let mut groups: Vec<(Arc<SpanOrigin>, Vec<&Span>)> = Vec::new();
    let mut sorted: Vec<&Span> = spans.iter().collect();
    sorted.sort_by_key(|s| (s.start_ns, s.span_id));
    for s in sorted {
        match groups
            .iter_mut()
            .find(|(o, _)| Arc::ptr_eq(o, &s.origin) || **o == *s.origin)
        {
            Some((_, v)) => v.push(s),
            None => groups.push((s.origin.clone(), vec![s])),
        }
    }
    // One ResourceSpans per distinct resource, one ScopeSpans per scope within it.
    let mut out: Vec<ResourceSpans> = Vec::new();
    for (origin, spans) in groups {
        let scope_spans = ScopeSpans {
            scope: Some(origin.scope.clone()),
            spans: spans.into_iter().map(to_otlp).collect(),
            schema_url: origin.scope_schema_url.clone(),
        };
        match out.iter_mut().find(|r| {
            r.resource.as_ref() == Some(&origin.resource)
                && r.schema_url == origin.resource_schema_url
        }) {
            Some(r) => r.scope_spans.push(scope_spans),
            None => out.push(ResourceSpans {
                resource: Some(origin.resource.clone()),
                scope_spans: vec![scope_spans],
                schema_url: origin.resource_schema_url.clone(),
            }),
        }
    }
    out
}

/// One stored span as an OTLP span.
pub fn to_otlp(s: &Span) -> ot::Span {
    ot::Span {
        trace_id: s.trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        trace_state: s.trace_state.clone(),
        parent_span_id: if s.is_root() {
            Vec::new()
        } else {
            s.parent_span_id.to_vec()
        },
        flags: s.flags,
        name: s.name.clone(),
        kind: s.kind,
        start_time_unix_nano: s.start_ns,
        end_time_unix_nano: s.end_ns,
        attributes: s.attributes.clone(),
        dropped_attributes_count: s.dropped_attributes_count,
        events: s.events.clone(),
        dropped_events_count: s.dropped_events_count,
        links: s.links.clone(),
        dropped_links_count: s.dropped_links_count,
        status: (s.status_code != 0 || !s.status_message.is_empty()).then(|| ot::Status {
            message: s.status_message.clone(),
            code: s.status_code,
        }),
    }
}

fn b64(b: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(b))
}

/// An `AnyValue` in jsonpb form.
pub fn any_value(v: &AnyValue) -> Value {
    match &v.value {
        None => json!({}),
        Some(any_value::Value::StringValue(s)) => json!({"stringValue": s}),
        Some(any_value::Value::BoolValue(b)) => json!({"boolValue": b}),
        Some(any_value::Value::IntValue(i)) => json!({"intValue": i.to_string()}),
        Some(any_value::Value::DoubleValue(d)) => match serde_json::Number::from_f64(*d) {
            Some(n) => json!({"doubleValue": n}),
            None => json!({"doubleValue": d.to_string()}),
        },
        Some(any_value::Value::ArrayValue(a)) => {
            json!({"arrayValue": {"values": a.values.iter().map(any_value).collect::<Vec<_>>()}})
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            json!({"kvlistValue": {"values": key_values(&kv.values)}})
        }
        Some(any_value::Value::BytesValue(b)) => json!({"bytesValue": b64(b)}),
        Some(any_value::Value::StringValueStrindex(i)) => json!({"stringValueStrindex": i}),
    }
}

/// Attributes in jsonpb form.
pub fn key_values(kvs: &[KeyValue]) -> Vec<Value> {
    kvs.iter()
        .map(|kv| {
            let mut m = Map::new();
            m.insert("key".into(), Value::String(kv.key.clone()));
            if let Some(v) = &kv.value {
                m.insert("value".into(), any_value(v));
            }
            Value::Object(m)
        })
        .collect()
}

fn put(m: &mut Map<String, Value>, k: &str, v: Value, keep: bool) {
    if keep {
        m.insert(k.into(), v);
    }
}

fn resource(r: &Resource) -> Value {
    let mut m = Map::new();
    put(
        &mut m,
        "attributes",
        Value::Array(key_values(&r.attributes)),
        !r.attributes.is_empty(),
    );
    put(
        &mut m,
        "droppedAttributesCount",
        json!(r.dropped_attributes_count),
        r.dropped_attributes_count != 0,
    );
    Value::Object(m)
}

fn scope(s: &InstrumentationScope) -> Value {
    let mut m = Map::new();
    put(&mut m, "name", json!(s.name), !s.name.is_empty());
    put(&mut m, "version", json!(s.version), !s.version.is_empty());
    put(
        &mut m,
        "attributes",
        Value::Array(key_values(&s.attributes)),
        !s.attributes.is_empty(),
    );
    Value::Object(m)
}

fn span(s: &ot::Span) -> Value {
    let mut m = Map::new();
    m.insert("traceId".into(), b64(&s.trace_id));
    m.insert("spanId".into(), b64(&s.span_id));
    put(
        &mut m,
        "traceState",
        json!(s.trace_state),
        !s.trace_state.is_empty(),
    );
    put(
        &mut m,
        "parentSpanId",
        b64(&s.parent_span_id),
        !s.parent_span_id.is_empty(),
    );
    put(&mut m, "flags", json!(s.flags), s.flags != 0);
    m.insert("name".into(), json!(s.name));
    let kind = ot::span::SpanKind::try_from(s.kind)
        .map(|k| k.as_str_name().to_string())
        .unwrap_or_else(|_| s.kind.to_string());
    put(&mut m, "kind", json!(kind), s.kind != 0);
    m.insert(
        "startTimeUnixNano".into(),
        json!(s.start_time_unix_nano.to_string()),
    );
    m.insert(
        "endTimeUnixNano".into(),
        json!(s.end_time_unix_nano.to_string()),
    );
    put(
        &mut m,
        "attributes",
        Value::Array(key_values(&s.attributes)),
        !s.attributes.is_empty(),
    );
    put(
        &mut m,
        "droppedAttributesCount",
        json!(s.dropped_attributes_count),
        s.dropped_attributes_count != 0,
    );
    let events: Vec<Value> = s
        .events
        .iter()
        .map(|e| {
            let mut em = Map::new();
            em.insert("timeUnixNano".into(), json!(e.time_unix_nano.to_string()));
            em.insert("name".into(), json!(e.name));
            put(
                &mut em,
                "attributes",
                Value::Array(key_values(&e.attributes)),
                !e.attributes.is_empty(),
            );
            Value::Object(em)
        })
        .collect();
    put(&mut m, "events", Value::Array(events), !s.events.is_empty());
    let links: Vec<Value> = s
        .links
        .iter()
        .map(|l| {
            let mut lm = Map::new();
            lm.insert("traceId".into(), b64(&l.trace_id));
            lm.insert("spanId".into(), b64(&l.span_id));
            put(
                &mut lm,
                "traceState",
                json!(l.trace_state),
                !l.trace_state.is_empty(),
            );
            put(
                &mut lm,
                "attributes",
                Value::Array(key_values(&l.attributes)),
                !l.attributes.is_empty(),
            );
            Value::Object(lm)
        })
        .collect();
    put(&mut m, "links", Value::Array(links), !s.links.is_empty());
    let mut st = Map::new();
    if let Some(status) = &s.status {
        put(
            &mut st,
            "message",
            json!(status.message),
            !status.message.is_empty(),
        );
        if status.code != 0 {
            let code = ot::status::StatusCode::try_from(status.code)
                .map(|c| c.as_str_name().to_string())
                .unwrap_or_else(|_| status.code.to_string());
            st.insert("code".into(), json!(code));
        }
    }
    m.insert("status".into(), Value::Object(st));
    Value::Object(m)
}

/// `{"resourceSpans":[…]}` in Tempo's jsonpb form.
pub fn trace_json(rs: &[ResourceSpans]) -> Value {
    json!({"resourceSpans": rs.iter().map(|r| {
        let mut m = Map::new();
        if let Some(res) = &r.resource {
            m.insert("resource".into(), resource(res));
        }
        m.insert("scopeSpans".into(), Value::Array(r.scope_spans.iter().map(|s| {
            let mut sm = Map::new();
            if let Some(sc) = &s.scope {
                sm.insert("scope".into(), scope(sc));
            }
            sm.insert("spans".into(), Value::Array(s.spans.iter().map(span).collect()));
            Value::Object(sm)
        }).collect()));
        Value::Object(m)
    }).collect::<Vec<_>>()})
}
