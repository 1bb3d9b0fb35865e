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

/// A float as Go's `strconv.FormatFloat(v, 'f', -1, 64)` writes it, which is how Prometheus
/// renders floats in label values (`count_values`, `quantile`'s `le`) and messages: `NaN`,
/// `+Inf`, `-Inf`, else the shortest round-trip digits without an exponent.
pub fn format_float(v: f64) -> String {
    go_format(v, false)
}

/// A sample value as Prometheus' JSON API writes it (`jsonutil.MarshalFloat`): like
/// [`format_float`], switching to `'e', -1` (`6.4e-17`, `3.5e+26`) below 1e-6 and from 1e21 on
/// in magnitude.
pub fn format_value(v: f64) -> String {
    go_format(v, true)
}

fn go_format(v: f64, exp_outside_range: bool) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let abs = v.abs();
    if abs == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let (digits, exp) = shortest_digits(abs);
    let sign = if v < 0.0 { "-" } else { "" };
    if !exp_outside_range || (1e-6..1e21).contains(&abs) {
        let n = digits.len() as i32;
        let body = if exp < 0 {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        } else if exp + 1 >= n {
            format!("{digits}{}", "0".repeat((exp + 1 - n) as usize))
        } else {
            let (int, frac) = digits.split_at(exp as usize + 1);
            format!("{int}.{frac}")
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{dot}{rest}e{esign}{:02}", exp.abs())
    }
}

/// The shortest decimal digits that round-trip `v > 0`, and the decimal exponent of the first
/// digit, with Go's tie rule: when two shortest candidates are equally close to the exact binary
/// value, Go (Ryū) takes the one with the even last digit, while Rust's formatter rounds half up
/// (`2154211742096151.25` is `…151.2` in Go and `…151.3` in Rust).
fn shortest_digits(v: f64) -> (String, i32) {
    let split = |s: &str| -> (String, i32) {
        let (m, e) = s.split_once('e').unwrap_or((s, "0"));
        (m.replace('.', ""), e.parse().unwrap_or(0))
    };
    let (digits, exp) = split(&format!("{v:e}"));
    let n = digits.len();
    // One more digit than the shortest: a tie needs it to be a 5 with nothing after it.
    let (longer, lexp) = split(&format!("{v:.n$e}"));
    if !longer.ends_with('5') {
        return (digits, exp);
    }
    // Exact expansion (an f64 has at most 767 significant decimal digits); 20 more digits
    // first, which rule out almost every candidate cheaply.
    for more in [n + 20, 800] {
        let (exact, _) = split(&format!("{v:.more$e}"));
        if exact.len() <= n + 1 || exact[n + 1..].bytes().any(|b| b != b'0') {
            return (digits, exp);
        }
    }
    let down = longer[..n].trim_end_matches('0');
    let even = down
        .as_bytes()
        .last()
        .is_some_and(|d| (d - b'0').is_multiple_of(2));
    if even && down.parse::<u128>().is_ok() {
        (down.to_string(), lexp)
    } else {
        (digits, exp)
    }
}

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
