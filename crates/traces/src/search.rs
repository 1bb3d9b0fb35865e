//! `/api/search`: TraceQL (`q`) or the legacy `tags`/`minDuration`/`maxDuration` parameters,
//! evaluated over whole traces read through [`TraceSource`], answered in Tempo's
//! `SearchResponse` JSON shape.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::Instant;

use common::TenantSet;
use proto::otlp::tonic::common::v1::{any_value, AnyValue, KeyValue};
use serde_json::{json, Value};

use crate::model::{Span, SpanCond, SpanField, SpanPred, Trace, TracePred, TraceScan, TraceSource};
use crate::tempo_json;
use crate::traceql::ast::{
    Attribute, BinaryOp, FieldExpr, Intrinsic, Pipeline, Scope, SpansetExpr, SpansetOp, Stage,
    Static,
};
use crate::traceql::{self, Evaluator, Query};
use crate::Error;

/// A search as the API received it.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    /// TraceQL query.
    pub q: Option<String>,
    /// Legacy logfmt `k=v` tags.
    pub tags: Option<String>,
    /// Legacy minimum trace duration.
    pub min_duration_ns: Option<u64>,
    /// Legacy maximum trace duration.
    pub max_duration_ns: Option<u64>,
    /// Most traces returned.
    pub limit: usize,
    /// Most spans per spanset returned.
    pub spss: usize,
    /// Range start, unix ns.
    pub start_ns: u64,
    /// Range end, unix ns.
    pub end_ns: u64,
}

/// One matched spanset of a trace.
#[derive(Debug, Clone, Default)]
pub struct MatchedSpanset {
    /// Indexes into the trace's spans.
    pub spans: Vec<usize>,
    /// Attributes shown per span (what the query touched or selected), by span index.
    pub span_attributes: BTreeMap<usize, Vec<KeyValue>>,
    /// Spanset attributes (`by()` groups, aggregate values).
    pub attributes: Vec<KeyValue>,
}

/// A trace that matched.
#[derive(Debug, Clone)]
pub struct Found {
    trace: Trace,
    spansets: Vec<MatchedSpanset>,
}

/// What a search found.
#[derive(Debug, Default)]
pub struct SearchResult {
    /// Matching traces (at most `limit`).
    pub traces: Vec<Found>,
    /// Traces looked at.
    pub inspected_traces: u64,
    /// Bytes read.
    pub inspected_bytes: u64,
}

/// Finds the matching spansets of one trace.
pub type Matcher = Box<dyn Fn(&Trace) -> Vec<MatchedSpanset> + Send + Sync>;

fn str_value(v: Option<&proto::otlp::tonic::common::v1::AnyValue>) -> Option<String> {
    match v.and_then(|v| v.value.as_ref())? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Parses logfmt `k=v k2="v 2"` pairs.
fn logfmt_pairs(s: &str) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| Error::BadRequest(format!("invalid tags {s:?}: expected key=value")))?;
        let key = rest[..eq].trim().to_string();
        rest = &rest[eq + 1..];
        let value;
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').ok_or_else(|| {
                Error::BadRequest(format!("invalid tags {s:?}: unterminated quote"))
            })?;
            value = r[..end].to_string();
            rest = r[end + 1..].trim_start();
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            value = rest[..end].to_string();
            rest = rest[end..].trim_start();
        }
        out.push((key, value));
    }
    Ok(out)
}

fn legacy_matcher(req: &SearchRequest) -> Result<Matcher, Error> {
    let tags = match &req.tags {
        Some(t) => logfmt_pairs(t)?,
        None => Vec::new(),
    };
    let (min, max) = (req.min_duration_ns, req.max_duration_ns);
    Ok(Box::new(move |tr: &Trace| {
        let dur = tr.end_ns().saturating_sub(tr.start_ns());
        if min.is_some_and(|m| dur < m) || max.is_some_and(|m| dur > m) {
            return Vec::new();
        }
        let matches = |s: &Span| {
            tags.iter().all(|(k, v)| {
                let got = if k == "name" {
                    Some(s.name.clone())
                } else {
                    str_value(
                        s.attributes
                            .iter()
                            .find(|kv| &kv.key == k)
                            .and_then(|kv| kv.value.as_ref()),
                    )
                    .or_else(|| {
                        str_value(
                            s.origin
                                .resource
                                .attributes
                                .iter()
                                .find(|kv| &kv.key == k)
                                .and_then(|kv| kv.value.as_ref()),
                        )
                    })
                };
                got.is_some_and(|g| g.to_lowercase().contains(&v.to_lowercase()))
            })
        };
        let spans: Vec<usize> = tr
            .spans
            .iter()
            .enumerate()
            .filter(|(_, s)| matches(s))
            .map(|(i, _)| i)
            .collect();
        if spans.is_empty() {
            return Vec::new();
        }
        vec![MatchedSpanset {
            spans,
            ..Default::default()
        }]
    }))
}

/// A TraceQL value as an OTLP attribute value (what search results show).
pub(crate) fn static_value(v: &Static) -> Option<AnyValue> {
    let value = match v {
        Static::Nil => return None,
        Static::Str(s) => any_value::Value::StringValue(s.clone()),
        Static::Int(i) => any_value::Value::IntValue(*i),
        Static::Float(f) => any_value::Value::DoubleValue(*f),
        Static::Bool(b) => any_value::Value::BoolValue(*b),
        other => any_value::Value::StringValue(other.to_string()),
    };
    Some(AnyValue { value: Some(value) })
}

pub(crate) fn key_values(v: &[(String, Static)]) -> Vec<KeyValue> {
    v.iter()
        .filter_map(|(k, v)| {
            static_value(v).map(|value| KeyValue {
                key: k.clone(),
                value: Some(value),
                ..Default::default()
            })
        })
        .collect()
}

/// Search spansets of a TraceQL evaluation.
fn traceql_spansets(ev: &Evaluator<'_>, tr: &Trace) -> Vec<MatchedSpanset> {
    ev.eval_trace(tr)
        .into_iter()
        .filter(|ss| !ss.spans.is_empty())
        .map(|ss| MatchedSpanset {
            spans: ss.spans.iter().map(|m| m.index).collect(),
            span_attributes: ss
                .spans
                .iter()
                .map(|m| (m.index, key_values(&m.attributes)))
                .collect(),
            attributes: key_values(&ss.attributes),
        })
        .collect()
}

/// The conditions of `q` a store can check on its columns (see [`TraceScan::filter`]): per
/// spanset filter, the comparisons of span intrinsics (`name`, `status`, `statusMessage`, `kind`,
/// `duration`) and of span, resource or unscoped attributes against a literal, combined with
/// `&&`/`||` as written, and `traceDuration >`/`>=` ANDed at the top of a filter; spanset
/// operators other than `||` need both sides, so both sides' conditions hold. Everything else
/// (negation, `parent.` attributes, `nil`, arithmetic, aggregates, events, links) is left out,
/// which only widens the condition. `None` when nothing can be pushed down.
pub fn pushdown(q: &Query) -> Option<TracePred> {
    pipeline_pred(&q.pipeline)
}

fn all_of<T>(mut v: Vec<T>, and: fn(Vec<T>) -> T) -> Option<T> {
    match v.len() {
        0 => None,
        1 => v.pop(),
        _ => Some(and(v)),
    }
}

fn pipeline_pred(p: &Pipeline) -> Option<TracePred> {
    let v: Vec<TracePred> = p
        .stages
        .iter()
        .filter_map(|s| match s {
            Stage::Spanset(e) => spanset_pred(e),
            _ => None,
        })
        .collect();
    all_of(v, TracePred::And)
}

fn spanset_pred(e: &SpansetExpr) -> Option<TracePred> {
    match e {
        SpansetExpr::Filter(f) => {
            let mut conj = Vec::new();
            let mut trace = Vec::new();
            top_conjuncts(f, &mut conj, &mut trace);
            if let Some(sp) = all_of(conj, SpanPred::And) {
                trace.push(TracePred::Span(sp));
            }
            all_of(trace, TracePred::And)
        }
        SpansetExpr::Pipeline(p) => pipeline_pred(p),
        SpansetExpr::Op { op, lhs, rhs } => {
            use SpansetOp::*;
            let (l, r) = (spanset_pred(lhs), spanset_pred(rhs));
            match op {
                Or => Some(TracePred::Or(vec![l?, r?])),
                // `{a} !> {b}` returns b spans without an a parent — also when nothing matches
                // a — so only the right side must hold.
                NotChild | NotParent | NotDescendant | NotAncestor | NotSibling => r,
                _ => all_of(l.into_iter().chain(r).collect(), TracePred::And),
            }
        }
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// Splits the top-level `&&` chain of a filter into span conditions and trace conditions.
fn top_conjuncts(f: &FieldExpr, span: &mut Vec<SpanPred>, trace: &mut Vec<TracePred>) {
    if let FieldExpr::Binary {
        op: BinaryOp::And,
        lhs,
        rhs,
    } = f
    {
        top_conjuncts(lhs, span, trace);
        top_conjuncts(rhs, span, trace);
        return;
    }
    if let FieldExpr::Binary { op, lhs, rhs } = f {
        if let (FieldExpr::Intrinsic(i), FieldExpr::Static(v)) = (&**lhs, &**rhs) {
            if i.intrinsic == Intrinsic::TraceDuration && matches!(op, BinaryOp::Gt | BinaryOp::Gte)
            {
                // Durations and ints compare as ns; floats are left to the engine.
                if let Static::Duration(ns) | Static::Int(ns) = v {
                    trace.push(TracePred::MinDuration {
                        ns: (*ns).max(0) as u64,
                        or_equal: *op == BinaryOp::Gte || *ns < 0,
                    });
                }
                return;
            }
        }
    }
    if let Some(p) = field_pred(f) {
        span.push(p);
    }
}

/// The pushable part of a span filter expression (`None`: unknown, i.e. may hold).
fn field_pred(f: &FieldExpr) -> Option<SpanPred> {
    let FieldExpr::Binary { op, lhs, rhs } = f else {
        return None;
    };
    match op {
        BinaryOp::And => {
            let v: Vec<SpanPred> = [field_pred(lhs), field_pred(rhs)]
                .into_iter()
                .flatten()
                .collect();
            all_of(v, SpanPred::And)
        }
        BinaryOp::Or => Some(SpanPred::Or(vec![field_pred(lhs)?, field_pred(rhs)?])),
        op if op.is_comparison() => {
            let FieldExpr::Static(value) = &**rhs else {
                return None;
            };
            if matches!(value, Static::Nil) {
                return None;
            }
            if matches!(op, BinaryOp::Re | BinaryOp::Nre) {
                // The engine matches nothing with a pattern that does not compile.
                let Static::Str(p) = value else {
                    return None;
                };
                regex::Regex::new(&format!("^(?:{p})$")).ok()?;
            }
            let field = match &**lhs {
                FieldExpr::Intrinsic(i) => match i.intrinsic {
                    Intrinsic::Name => SpanField::Name,
                    Intrinsic::Status => SpanField::Status,
                    Intrinsic::StatusMessage => SpanField::StatusMessage,
                    Intrinsic::Kind => SpanField::Kind,
                    Intrinsic::Duration => SpanField::Duration,
                    _ => return None,
                },
                FieldExpr::Attribute(Attribute {
                    parent: false,
                    scope,
                    name,
                }) => match scope {
                    Scope::Span => SpanField::SpanAttr(name.clone()),
                    Scope::Resource => SpanField::ResourceAttr(name.clone()),
                    Scope::None => SpanField::AnyAttr(name.clone()),
                    _ => return None,
                },
                _ => return None,
            };
            Some(SpanPred::Cond(SpanCond {
                field,
                op: *op,
                value: value.clone(),
            }))
        }
        _ => None,
    }
}

/// Parses a search's TraceQL query; `None` for an empty query or `{}` (match every trace).
fn traceql_query(req: &SearchRequest) -> Result<Option<Query>, Error> {
    match req.q.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(q) => {
            let query = traceql::parse(q)?;
            if query.metrics.is_some() {
                return Err(Error::BadRequest(
                    "metrics queries are answered by /api/metrics/query_range and /api/metrics/query"
                        .into(),
                ));
            }
            Ok(Some(query))
        }
    }
}

/// Runs a search.
pub async fn search(
    source: &dyn TraceSource,
    tenants: &TenantSet,
    req: &SearchRequest,
) -> Result<SearchResult, Error> {
    let query = traceql_query(req)?;
    let legacy = match &query {
        None => Some(legacy_matcher(req)?),
        Some(_) => None,
    };
    let ev = query.as_ref().map(Evaluator::new);
    let (service_names, span_names) = query.as_ref().map(traceql::hints).unwrap_or_default();
    let m = |tr: &Trace| match (&ev, &legacy) {
        (Some(ev), _) => traceql_spansets(ev, tr),
        (None, Some(l)) => l(tr),
        (None, None) => Vec::new(),
    };
    let mut out = SearchResult::default();
    let scan = TraceScan {
        tenants: Some(tenants.clone()),
        start_ns: req.start_ns,
        end_ns: req.end_ns,
        service_names,
        span_names,
        filter: query.as_ref().and_then(pushdown),
    };
    let limit = req.limit;
    let stats = source
        .scan(&scan, &mut |_, tr| {
            out.inspected_traces += 1;
            let spansets = m(tr);
            if !spansets.is_empty() {
                out.traces.push(Found {
                    trace: tr.clone(),
                    spansets,
                });
            }
            if out.traces.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .await?;
    out.inspected_bytes = stats.bytes;
    Ok(out)
}

/// Trace ids in search results: hex without leading zeros (Tempo's form).
pub fn short_hex(id: &[u8]) -> String {
    let h = hex::encode(id);
    let t = h.trim_start_matches('0');
    if t.is_empty() {
        "0".into()
    } else {
        t.to_string()
    }
}

fn spanset_json(tr: &Trace, ss: &MatchedSpanset, spss: usize) -> Value {
    let spans: Vec<Value> = ss
        .spans
        .iter()
        .take(spss)
        .map(|&i| {
            let s = &tr.spans[i];
            let mut v = json!({
                "spanID": hex::encode(s.span_id),
                "name": s.name,
                "startTimeUnixNano": s.start_ns.to_string(),
                "durationNanos": s.duration_ns().to_string(),
            });
            if let Some(a) = ss.span_attributes.get(&i) {
                if !a.is_empty() {
                    v["attributes"] = Value::Array(tempo_json::key_values(a));
                }
            }
            v
        })
        .collect();
    let mut v = json!({"spans": spans, "matched": ss.spans.len()});
    if !ss.attributes.is_empty() {
        v["attributes"] = Value::Array(tempo_json::key_values(&ss.attributes));
    }
    v
}

/// Tempo's `SearchResponse` JSON, with at most `spss` spans shown per spanset.
pub fn response_json(r: &SearchResult, spss: usize, started: Instant) -> Value {
    let traces: Vec<Value> = r
        .traces
        .iter()
        .map(|f| {
            let tr = &f.trace;
            let root = tr.root();
            let start = tr.start_ns();
            let dur_ms = (tr.end_ns().saturating_sub(start) / 1_000_000) as u32;
            let mut stats: BTreeMap<String, (u64, u64)> = BTreeMap::new();
            for s in &tr.spans {
                let e = stats.entry(s.origin.service_name().to_string()).or_default();
                e.0 += 1;
                if s.status_code == 2 {
                    e.1 += 1;
                }
            }
            let sets: Vec<Value> = f.spansets.iter().map(|ss| spanset_json(tr, ss, spss)).collect();
            let mut v = json!({
                "traceID": short_hex(&tr.trace_id),
                "rootServiceName": root.map_or("<root span not yet received>".to_string(), |s| s.origin.service_name().to_string()),
                "startTimeUnixNano": start.to_string(),
                "durationMs": dur_ms,
                "spanSets": sets,
                "serviceStats": stats.iter().map(|(k, (n, e))| {
                    let mut m = json!({"spanCount": n});
                    if *e > 0 {
                        m["errorCount"] = json!(e);
                    }
                    (k.clone(), m)
                }).collect::<serde_json::Map<_, _>>(),
            });
            if let Some(r) = root {
                v["rootTraceName"] = json!(r.name);
            }
            if let Some(first) = sets.first() {
                v["spanSet"] = first.clone();
            }
            v
        })
        .collect();
    json!({
        "traces": traces,
        "metrics": {
            "inspectedTraces": r.inspected_traces,
            "inspectedBytes": r.inspected_bytes.to_string(),
            "totalBlocks": 0,
            "completedJobs": 1,
            "totalJobs": 1,
            "elapsedMs": started.elapsed().as_millis() as u64,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traceql::ast::Status;

    #[test]
    fn logfmt_tags_and_hex() {
        assert_eq!(
            logfmt_pairs(r#"service.name=api http.url="/a b" x=1"#).unwrap(),
            vec![
                ("service.name".into(), "api".into()),
                ("http.url".into(), "/a b".into()),
                ("x".into(), "1".into())
            ]
        );
        assert!(logfmt_pairs("novalue").is_err());
        assert_eq!(short_hex(&[0, 0, 1, 2]), "102");
    }

    #[test]
    fn pushdown_keeps_only_what_must_hold() {
        let p = |q: &str| pushdown(&traceql::parse(q).unwrap());
        let cond = |field, op, value| SpanPred::Cond(SpanCond { field, op, value });
        let err = || {
            cond(
                SpanField::Status,
                BinaryOp::Eq,
                Static::Status(Status::Error),
            )
        };
        assert_eq!(
            p(r#"{ resource.service.name = "a" && span.http.status_code >= 500 && .x =~ "y.*" }"#),
            Some(TracePred::Span(SpanPred::And(vec![
                cond(
                    SpanField::ResourceAttr("service.name".into()),
                    BinaryOp::Eq,
                    Static::Str("a".into())
                ),
                cond(
                    SpanField::SpanAttr("http.status_code".into()),
                    BinaryOp::Gte,
                    Static::Int(500)
                ),
                cond(
                    SpanField::AnyAttr("x".into()),
                    BinaryOp::Re,
                    Static::Str("y.*".into())
                ),
            ])))
        );
        // Unknown parts of a conjunction are dropped; of a disjunction, they lose it whole.
        assert_eq!(
            p(r#"{ status = error && parent.name = "x" }"#),
            Some(TracePred::Span(err()))
        );
        assert_eq!(p(r#"{ status = error || parent.name = "x" }"#), None);
        assert_eq!(
            p(r#"{ status = error } > { span.a != nil }"#),
            Some(TracePred::Span(err()))
        );
        assert_eq!(p(r#"{ status = error } || { span.a != nil }"#), None);
        // A negated structural operator holds when its left side matches nothing.
        for op in ["!>", "!<", "!>>", "!<<", "!~"] {
            assert_eq!(
                p(&format!(r#"{{ name = "x" }} {op} {{ status = error }}"#)),
                Some(TracePred::Span(err())),
                "{op}"
            );
        }
        assert_eq!(
            p(r#"{ status = error } || { name = "x" }"#),
            Some(TracePred::Or(vec![
                TracePred::Span(err()),
                TracePred::Span(cond(SpanField::Name, BinaryOp::Eq, Static::Str("x".into())))
            ]))
        );
        assert_eq!(
            p("{ traceDuration >= 1s } | count() > 2"),
            Some(TracePred::MinDuration {
                ns: 1_000_000_000,
                or_equal: true
            })
        );
        for q in [
            "{}",
            "{ !(status = error) }",
            "{ span.a = nil }",
            "{ duration * 2 > 1s }",
            r#"{ event:name = "x" }"#,
            "{ traceDuration < 1s }",
        ] {
            assert!(p(q).is_none(), "{q}");
        }
    }
}
