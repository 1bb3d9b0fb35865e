//! The Prometheus JSON encoding of query results (the `data` object of `/api/v1/query{,_range}`).

use common::time::format_prom_ts;
use serde_json::{json, Map, Value as Json};

use super::histogram::buckets;
use super::{MatrixSeries, Value};
use crate::Histogram;

fn labels_json(l: &common::Labels) -> Json {
    let mut m = Map::new();
    for x in l {
        m.insert(x.name.clone(), Json::String(x.value.clone()));
    }
    Json::Object(m)
}

pub use crate::model::{format_float, format_value};

fn point(t: i64, v: f64) -> Json {
    json!([format_prom_ts(t), format_value(v)])
}

/// A native histogram object: `{"count","sum","buckets":[[rule,"lower","upper","count"],…]}`,
/// empty buckets omitted.
pub(crate) fn histogram_json(h: &Histogram) -> Json {
    let mut bs = Vec::new();
    for b in buckets(h) {
        if b.count == 0.0 {
            continue;
        }
        let rule = match (b.lower_inclusive, b.upper_inclusive) {
            (false, true) => 0,
            (true, false) => 1,
            (false, false) => 2,
            (true, true) => 3,
        };
        bs.push(json!([
            rule,
            format_value(b.lower),
            format_value(b.upper),
            format_value(b.count)
        ]));
    }
    let mut m = Map::new();
    m.insert("count".into(), Json::String(format_value(h.count)));
    m.insert("sum".into(), Json::String(format_value(h.sum)));
    if !bs.is_empty() {
        m.insert("buckets".into(), Json::Array(bs));
    }
    Json::Object(m)
}

fn series_json(s: &MatrixSeries) -> Json {
    let mut m = Map::new();
    m.insert("metric".into(), labels_json(&s.labels));
    if !s.samples.is_empty() {
        m.insert(
            "values".into(),
            Json::Array(s.samples.iter().map(|p| point(p.t, p.v)).collect()),
        );
    }
    if !s.histograms.is_empty() {
        m.insert(
            "histograms".into(),
            Json::Array(
                s.histograms
                    .iter()
                    .map(|p| json!([format_prom_ts(p.t), histogram_json(&p.h)]))
                    .collect(),
            ),
        );
    }
    Json::Object(m)
}

/// The Prometheus JSON `data` object for a result: `{"resultType": "...", "result": ...}`.
pub fn result_json(v: &Value) -> Json {
    match v {
        Value::Scalar { t, v } => json!({"resultType": "scalar", "result": point(*t, *v)}),
        Value::String { t, v } => {
            json!({"resultType": "string", "result": [format_prom_ts(*t), v]})
        }
        Value::Vector(samples) => {
            let result: Vec<Json> = samples
                .iter()
                .map(|s| {
                    let mut m = Map::new();
                    m.insert("metric".into(), labels_json(&s.labels));
                    match &s.h {
                        Some(h) => m.insert(
                            "histogram".into(),
                            json!([format_prom_ts(s.t), histogram_json(h)]),
                        ),
                        None => m.insert("value".into(), point(s.t, s.v)),
                    };
                    Json::Object(m)
                })
                .collect();
            json!({"resultType": "vector", "result": result})
        }
        Value::Matrix(series) => {
            json!({"resultType": "matrix", "result": series.iter().map(series_json).collect::<Vec<_>>()})
        }
    }
}
