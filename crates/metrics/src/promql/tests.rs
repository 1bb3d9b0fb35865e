//! Golden tests of the PromQL engine, in a promqltest-like format of our own (`testdata/*.test`):
//!
//! ```text
//! load 1m
//!   metric{a="b"} 0+10x100 _ stale 3 {{schema:0 sum:5 count:4 buckets:[1 2 1]}}
//! clear
//! eval instant at 10m <expr>        # also eval_ordered / eval_warn / eval_info / eval_fail
//!   metric{a="b"} 100               # expected elements; a bare number is a scalar result
//! eval range from 0 to 10m step 1m <expr>
//!   {a="b"} 0+10x10                 # expected points per step, `_` for none
//! eval_fail instant at 0 <expr>
//!   error <substring of the message>
//! ```
//!
//! Samples of a `load` block sit at `0, interval, 2·interval, …`. Floats compare with a relative
//! tolerance of 1e-6 (NaN equals NaN); vectors compare as sets unless `eval_ordered`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{Labels, Matcher};

use super::histogram as nh;
use super::*;
use crate::{Histogram, ResetHint, SeriesData, Span, STALE_NAN_BITS};

/// An in-memory [`SeriesSource`] that clips data to the requested range (so planning mistakes show).
#[derive(Default)]
pub(crate) struct MemSource {
    pub series: Vec<SeriesData>,
}

#[async_trait::async_trait]
impl SeriesSource for MemSource {
    async fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesData>, Error> {
        let mut out = Vec::new();
        for s in &self.series {
            if !Matcher::all_match(matchers, &s.labels) {
                continue;
            }
            let samples: Vec<Sample> = s
                .samples
                .iter()
                .filter(|p| p.t >= mint && p.t <= maxt)
                .copied()
                .collect();
            let histograms: Vec<HistogramSample> = s
                .histograms
                .iter()
                .filter(|p| p.t >= mint && p.t <= maxt)
                .cloned()
                .collect();
            if samples.is_empty() && histograms.is_empty() {
                continue;
            }
            out.push(SeriesData {
                labels: s.labels.clone(),
                samples,
                histograms,
            });
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }
}

fn dur(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('-') {
        return dur(rest).map(|v| -v);
    }
    if s == "0" {
        return Ok(0);
    }
    common::time::parse_duration_units(s).ok_or_else(|| format!("bad duration {s:?}"))
}

/// One point of series notation.
#[derive(Clone, Debug)]
enum Pt {
    Gap,
    F(f64),
    H(Histogram),
}

fn parse_f(s: &str) -> Result<f64, String> {
    match s {
        "Inf" | "+Inf" | "inf" => Ok(f64::INFINITY),
        "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        "stale" => Ok(f64::from_bits(STALE_NAN_BITS)),
        _ => s.parse::<f64>().map_err(|_| format!("bad number {s:?}")),
    }
}

fn parse_list(s: &str) -> Result<Vec<f64>, String> {
    let s = s.trim().trim_start_matches('[').trim_end_matches(']');
    s.split_whitespace().map(parse_f).collect()
}

/// `{{schema:0 sum:5 count:4 z_bucket:1 z_bucket_w:0.001 buckets:[1 2 1] offset:0 n_buckets:[..] n_offset:0 custom_values:[..] counter_reset_hint:gauge}}`
fn parse_hist(s: &str) -> Result<Histogram, String> {
    let inner = s
        .trim()
        .strip_prefix("{{")
        .and_then(|x| x.strip_suffix("}}"))
        .ok_or_else(|| format!("bad histogram {s:?}"))?;
    let mut h = Histogram::default();
    let (mut offset, mut n_offset) = (0, 0);
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let colon = rest
            .find(':')
            .ok_or_else(|| format!("bad histogram field in {s:?}"))?;
        let key = rest[..colon].trim();
        let after = rest[colon + 1..].trim_start();
        let (val, next) = if after.starts_with('[') {
            let end = after.find(']').ok_or("unclosed [")? + 1;
            (&after[..end], &after[end..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        rest = next.trim_start();
        match key {
            "schema" => h.schema = val.parse().map_err(|_| "bad schema")?,
            "sum" => h.sum = parse_f(val)?,
            "count" => h.count = parse_f(val)?,
            "z_bucket" => h.zero_count = parse_f(val)?,
            "z_bucket_w" => h.zero_threshold = parse_f(val)?,
            "buckets" => h.positive_buckets = parse_list(val)?,
            "n_buckets" => h.negative_buckets = parse_list(val)?,
            "offset" => offset = val.parse().map_err(|_| "bad offset")?,
            "n_offset" => n_offset = val.parse().map_err(|_| "bad n_offset")?,
            "custom_values" => {
                h.custom_values = parse_list(val)?;
                h.schema = nh::CUSTOM_BUCKETS_SCHEMA;
            }
            "counter_reset_hint" => {
                h.reset_hint = match val {
                    "gauge" => ResetHint::Gauge,
                    "reset" => ResetHint::Yes,
                    "not_reset" => ResetHint::No,
                    _ => ResetHint::Unknown,
                }
            }
            _ => return Err(format!("unknown histogram field {key:?}")),
        }
    }
    if !h.positive_buckets.is_empty() {
        h.positive_spans = vec![Span {
            offset,
            length: h.positive_buckets.len() as u32,
        }];
    }
    if !h.negative_buckets.is_empty() {
        h.negative_spans = vec![Span {
            offset: n_offset,
            length: h.negative_buckets.len() as u32,
        }];
    }
    Ok(h)
}

/// Splits series notation into tokens, keeping `{{…}}` histogram literals whole.
fn tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c == '{' && cs.get(i + 1) == Some(&'{') {
            depth += 1;
            cur.push_str("{{");
            i += 2;
            continue;
        }
        if c == '}' && cs.get(i + 1) == Some(&'}') {
            depth -= 1;
            cur.push_str("}}");
            i += 2;
            continue;
        }
        if c.is_whitespace() && depth == 0 {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
        i += 1;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Expands series notation: `a+bxn` (n+1 points), `axn`, `_`, `_xn` (n gaps), `stale`, numbers,
/// histogram literals and `{{…}}+{{…}}xn`.
fn expand_values(s: &str) -> Result<Vec<Pt>, String> {
    let mut out = Vec::new();
    for tok in tokens(s) {
        if tok == "_" {
            out.push(Pt::Gap);
            continue;
        }
        if let Some(n) = tok.strip_prefix("_x") {
            let n: usize = n.parse().map_err(|_| format!("bad {tok:?}"))?;
            out.extend(std::iter::repeat_n(Pt::Gap, n));
            continue;
        }
        if tok.starts_with("{{") {
            let close = tok.find("}}").ok_or("unclosed histogram")? + 2;
            let base = parse_hist(&tok[..close])?;
            let rest = &tok[close..];
            if rest.is_empty() {
                out.push(Pt::H(base));
                continue;
            }
            let (inc, n) = if let Some(r) = rest.strip_prefix('+') {
                let c2 = r.find("}}").ok_or("unclosed histogram")? + 2;
                let inc = parse_hist(&r[..c2])?;
                let n: usize = r[c2..]
                    .trim_start_matches('x')
                    .parse()
                    .map_err(|_| format!("bad {tok:?}"))?;
                (Some(inc), n)
            } else {
                let n: usize = rest
                    .trim_start_matches('x')
                    .parse()
                    .map_err(|_| format!("bad {tok:?}"))?;
                (None, n)
            };
            let mut cur = base;
            for i in 0..=n {
                if i > 0 {
                    if let Some(inc) = &inc {
                        let hint = cur.reset_hint;
                        cur = nh::add(&cur, inc);
                        cur.custom_values = inc.custom_values.clone();
                        cur.reset_hint = hint;
                    }
                }
                out.push(Pt::H(cur.clone()));
            }
            continue;
        }
        if let Some(xpos) = tok.rfind('x') {
            let (head, n) = (&tok[..xpos], &tok[xpos + 1..]);
            let n: usize = n.parse().map_err(|_| format!("bad {tok:?}"))?;
            // Find the operator between base and increment (not a leading sign, not an exponent).
            let bytes = head.as_bytes();
            let mut op = None;
            for i in (1..bytes.len()).rev() {
                if (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E') {
                    op = Some(i);
                    break;
                }
            }
            let (a, b) = match op {
                Some(i) => {
                    let inc = parse_f(&head[i + 1..])?;
                    (
                        parse_f(&head[..i])?,
                        if bytes[i] == b'-' { -inc } else { inc },
                    )
                }
                None => (parse_f(head)?, 0.0),
            };
            for i in 0..=n {
                out.push(Pt::F(a + b * i as f64));
            }
            continue;
        }
        out.push(Pt::F(parse_f(&tok)?));
    }
    Ok(out)
}

/// Parses `name{a="b", c="d"}` at the start of `s`; returns the labels and the rest.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let s = s.trim_start();
    let name_end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(s.len());
    let mut pairs: Vec<(String, String)> = Vec::new();
    if name_end > 0 {
        pairs.push(("__name__".into(), s[..name_end].to_string()));
    }
    let mut rest = &s[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let cs: Vec<char> = r.chars().collect();
        let mut i = 0;
        loop {
            while i < cs.len() && (cs[i].is_whitespace() || cs[i] == ',') {
                i += 1;
            }
            if i >= cs.len() {
                return Err(format!("unclosed labels in {s:?}"));
            }
            if cs[i] == '}' {
                i += 1;
                break;
            }
            let mut name = String::new();
            if cs[i] == '"' {
                i += 1;
                while i < cs.len() && cs[i] != '"' {
                    name.push(cs[i]);
                    i += 1;
                }
                i += 1;
            } else {
                while i < cs.len() && cs[i] != '=' && !cs[i].is_whitespace() {
                    name.push(cs[i]);
                    i += 1;
                }
            }
            while i < cs.len() && cs[i] != '"' {
                i += 1;
            }
            i += 1;
            let mut val = String::new();
            while i < cs.len() && cs[i] != '"' {
                if cs[i] == '\\' && i + 1 < cs.len() {
                    i += 1;
                    val.push(match cs[i] {
                        'n' => '\n',
                        't' => '\t',
                        c => c,
                    });
                } else {
                    val.push(cs[i]);
                }
                i += 1;
            }
            i += 1;
            pairs.push((name, val));
        }
        let consumed: usize = cs[..i].iter().map(|c| c.len_utf8()).sum();
        rest = &r[consumed..];
    }
    Ok((Labels::from_pairs(pairs), rest))
}

/// Loads a `load` block; returns the label sets it touched.
fn load(block: &[String], src: &mut MemSource) -> Result<Vec<Labels>, String> {
    let interval = dur(block[0]
        .trim_start_matches("load_with_nhcb")
        .trim_start_matches("load")
        .trim())?;
    let mut touched = Vec::new();
    for line in &block[1..] {
        let (labels, rest) = parse_labels(line)?;
        touched.push(labels.clone());
        let pts = expand_values(rest)?;
        let idx = match src.series.iter().position(|s| s.labels == labels) {
            Some(i) => i,
            None => {
                src.series.push(SeriesData {
                    labels: labels.clone(),
                    ..Default::default()
                });
                src.series.len() - 1
            }
        };
        let s = &mut src.series[idx];
        for (i, p) in pts.into_iter().enumerate() {
            let t = i as i64 * interval;
            match p {
                Pt::Gap => {}
                Pt::F(v) => s.samples.push(Sample { t, v }),
                Pt::H(h) => s.histograms.push(HistogramSample { t, h: Arc::new(h) }),
            }
        }
        s.samples.sort_by_key(|p| p.t);
        s.histograms.sort_by_key(|p| p.t);
    }
    Ok(touched)
}

/// `load_with_nhcb`: also stores every classic histogram (`_bucket`/`_count`/`_sum`) of the block
/// as native histograms with custom buckets under the base name, like upstream's test loader.
fn add_nhcb(src: &mut MemSource, touched: &[Labels]) {
    #[derive(Default)]
    struct Temp {
        buckets: Vec<(f64, f64)>,
        count: Option<f64>,
        sum: f64,
    }
    let mut groups: BTreeMap<Labels, BTreeMap<i64, Temp>> = BTreeMap::new();
    for s in src.series.iter().filter(|s| touched.contains(&s.labels)) {
        let name = s.labels.metric_name().unwrap_or("").to_string();
        let (base, kind) = if let Some(b) = name.strip_suffix("_bucket") {
            (b, 0)
        } else if let Some(b) = name.strip_suffix("_count") {
            (b, 1)
        } else if let Some(b) = name.strip_suffix("_sum") {
            (b, 2)
        } else {
            continue;
        };
        let le = match kind {
            0 => match s.labels.get("le").and_then(nh::parse_go_float) {
                Some(le) if !le.is_nan() => le,
                _ => continue,
            },
            _ => 0.0,
        };
        let mut key = s.labels.clone();
        key.remove("le");
        key.set("__name__", base);
        let g = groups.entry(key).or_default();
        for p in s.samples.iter().filter(|p| !crate::is_stale_nan(p.v)) {
            let t = g.entry(p.t).or_default();
            match kind {
                0 => t.buckets.push((le, p.v)),
                1 => t.count = Some(p.v),
                _ => t.sum = p.v,
            }
        }
    }
    for (labels, by_t) in groups {
        let mut hs = Vec::new();
        for (t, mut tmp) in by_t {
            if tmp.buckets.is_empty() {
                continue;
            }
            tmp.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let count = tmp.count.unwrap_or(tmp.buckets[tmp.buckets.len() - 1].1);
            if tmp.buckets[tmp.buckets.len() - 1].0 != f64::INFINITY {
                tmp.buckets.push((f64::INFINITY, count));
            }
            let mut prev = 0.0;
            let mut counts = Vec::new();
            for (_, c) in &tmp.buckets {
                counts.push(c - prev);
                prev = *c;
            }
            let h = Histogram {
                schema: nh::CUSTOM_BUCKETS_SCHEMA,
                count,
                sum: tmp.sum,
                positive_spans: vec![Span {
                    offset: 0,
                    length: counts.len() as u32,
                }],
                positive_buckets: counts,
                custom_values: tmp.buckets[..tmp.buckets.len() - 1]
                    .iter()
                    .map(|b| b.0)
                    .collect(),
                ..Default::default()
            };
            hs.push(HistogramSample { t, h: Arc::new(h) });
        }
        if !hs.is_empty() {
            src.series.push(SeriesData {
                labels,
                samples: Vec::new(),
                histograms: hs,
            });
        }
    }
}

fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    let d = (a - b).abs();
    d <= 1e-6 * a.abs().max(b.abs()) || d < 1e-12
}

fn hist_close(a: &Histogram, b: &Histogram) -> bool {
    let ba: Vec<_> = nh::buckets(a)
        .into_iter()
        .filter(|x| x.count != 0.0)
        .collect();
    let bb: Vec<_> = nh::buckets(b)
        .into_iter()
        .filter(|x| x.count != 0.0)
        .collect();
    close(a.count, b.count)
        && close(a.sum, b.sum)
        && ba.len() == bb.len()
        && ba.iter().zip(&bb).all(|(x, y)| {
            close(x.lower, y.lower) && close(x.upper, y.upper) && close(x.count, y.count)
        })
}

fn pt_matches(exp: &Pt, v: f64, h: Option<&Histogram>) -> bool {
    match (exp, h) {
        (Pt::F(e), None) => close(*e, v),
        (Pt::H(e), Some(h)) => hist_close(e, h),
        _ => false,
    }
}

struct Eval {
    kind: String,
    expr: String,
    start: i64,
    end: i64,
    step: i64,
    range: bool,
    expected: Vec<String>,
}

fn parse_eval(block: &[String]) -> Result<Eval, String> {
    let head = &block[0];
    let (kind, rest) = head.split_once(' ').ok_or("bad eval")?;
    let rest = rest.trim();
    let mut e = Eval {
        kind: kind.to_string(),
        expr: String::new(),
        start: 0,
        end: 0,
        step: 0,
        range: false,
        expected: block[1..].iter().map(|s| s.trim().to_string()).collect(),
    };
    if let Some(r) = rest.strip_prefix("instant at ") {
        let (t, expr) = r.trim().split_once(' ').ok_or("bad eval instant")?;
        e.start = dur(t)?;
        e.end = e.start;
        e.expr = expr.trim().to_string();
    } else if let Some(r) = rest.strip_prefix("range from ") {
        let parts: Vec<&str> = r.trim().splitn(6, ' ').collect();
        if parts.len() < 6 || parts[1] != "to" || parts[3] != "step" {
            return Err(format!("bad eval range {head:?}"));
        }
        e.start = dur(parts[0])?;
        e.end = dur(parts[2])?;
        e.step = dur(parts[4])?;
        e.range = true;
        e.expr = parts[5].trim().to_string();
    } else {
        return Err(format!("bad eval {head:?}"));
    }
    Ok(e)
}

fn run_eval(rt: &tokio::runtime::Runtime, src: &MemSource, e: &Eval) -> Result<(), String> {
    let opts = EngineOptions {
        timeout: Duration::from_secs(20),
        ..Default::default()
    };
    let res = rt.block_on(async {
        if e.range {
            range_query(src, &e.expr, e.start, e.end, e.step, &opts).await
        } else {
            instant_query(src, &e.expr, e.start, &opts).await
        }
    });
    if e.range {
        same_on_every_path(rt, src, e, &opts, &res)?;
    }
    if e.kind == "eval_fail" {
        return match res {
            Ok(r) => Err(format!("expected failure, got {:?}", r.value)),
            Err(err) => {
                let msg = err.to_string();
                for l in &e.expected {
                    if let Some(want) = l.strip_prefix("error ") {
                        if !msg.contains(want.trim()) {
                            return Err(format!("error {msg:?} does not contain {want:?}"));
                        }
                    }
                }
                Ok(())
            }
        };
    }
    let res = res.map_err(|err| format!("unexpected error: {err}"))?;
    if e.kind == "eval_warn" && res.warnings.is_empty() {
        return Err("expected warnings, got none".into());
    }
    if e.kind == "eval_info" && res.infos.is_empty() {
        return Err("expected infos, got none".into());
    }
    if e.range {
        let Value::Matrix(m) = &res.value else {
            return Err(format!("range query returned {:?}", res.value));
        };
        let mut want: BTreeMap<Labels, Vec<(i64, Pt)>> = BTreeMap::new();
        for l in &e.expected {
            let (labels, rest) = parse_labels(l)?;
            let pts = expand_values(rest)?;
            let mut v = Vec::new();
            for (i, p) in pts.into_iter().enumerate() {
                if !matches!(p, Pt::Gap) {
                    v.push((e.start + i as i64 * e.step, p));
                }
            }
            want.insert(labels, v);
        }
        if m.len() != want.len() {
            return Err(format!(
                "want {} series, got {}: {}",
                want.len(),
                m.len(),
                show_matrix(m)
            ));
        }
        for s in m {
            let Some(w) = want.get(&s.labels) else {
                return Err(format!(
                    "unexpected series {}: {}",
                    s.labels,
                    show_matrix(m)
                ));
            };
            let mut got: Vec<(i64, f64, Option<&Histogram>)> =
                s.samples.iter().map(|p| (p.t, p.v, None)).collect();
            got.extend(s.histograms.iter().map(|p| (p.t, 0.0, Some(p.h.as_ref()))));
            got.sort_by_key(|x| x.0);
            let ok = got.len() == w.len()
                && got
                    .iter()
                    .zip(w)
                    .all(|(g, (wt, wp))| g.0 == *wt && pt_matches(wp, g.1, g.2));
            if !ok {
                return Err(format!(
                    "series {} mismatch: got {}",
                    s.labels,
                    show_matrix(m)
                ));
            }
        }
        return Ok(());
    }
    match &res.value {
        Value::Scalar { v, .. } => {
            let [l] = e.expected.as_slice() else {
                return Err(format!("got scalar {v}, expected {:?}", e.expected));
            };
            let want = parse_f(l)?;
            if !close(want, *v) {
                return Err(format!("got scalar {v}, want {want}"));
            }
            Ok(())
        }
        Value::String { v, .. } => {
            let want = e
                .expected
                .first()
                .map(|s| s.trim_matches('"'))
                .unwrap_or("");
            if want != v {
                return Err(format!("got string {v:?}, want {want:?}"));
            }
            Ok(())
        }
        Value::Vector(got) => {
            let mut want = Vec::new();
            for l in &e.expected {
                let (labels, rest) = parse_labels(l)?;
                let pts = expand_values(rest)?;
                let [p] = pts.as_slice() else {
                    return Err(format!("expected one value in {l:?}"));
                };
                want.push((labels, p.clone()));
            }
            let show = || {
                got.iter()
                    .map(|s| match &s.h {
                        Some(h) => format!("{} {}", s.labels, json::histogram_json(h)),
                        None => format!("{} {}", s.labels, s.v),
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            if got.len() != want.len() {
                return Err(format!(
                    "want {} elements, got {}: {}",
                    want.len(),
                    got.len(),
                    show()
                ));
            }
            let ordered = e.kind == "eval_ordered";
            for (i, (wl, wp)) in want.iter().enumerate() {
                let found = if ordered {
                    let g = &got[i];
                    *g.labels == *wl && pt_matches(wp, g.v, g.h.as_deref())
                } else {
                    got.iter()
                        .any(|g| *g.labels == *wl && pt_matches(wp, g.v, g.h.as_deref()))
                };
                if !found {
                    return Err(format!("missing/mismatched {wl} {wp:?}; got {}", show()));
                }
            }
            if got.iter().any(|s| s.t != e.start) {
                return Err("vector sample timestamps must be the evaluation time".into());
            }
            Ok(())
        }
        Value::Matrix(m) => {
            // Instant matrix results: each expected line is `labels v@t v@t …` (t in duration notation).
            let mut want: BTreeMap<Labels, String> = BTreeMap::new();
            for l in &e.expected {
                let (labels, rest) = parse_labels(l)?;
                want.insert(
                    labels,
                    rest.split_whitespace().collect::<Vec<_>>().join(" "),
                );
            }
            let mut gotm: BTreeMap<Labels, String> = BTreeMap::new();
            for s in m {
                let pts: Vec<String> = s
                    .samples
                    .iter()
                    .map(|p| format!("{}@{}", format_float(p.v), p.t / 1000))
                    .collect();
                gotm.insert((*s.labels).clone(), pts.join(" "));
            }
            if gotm != want {
                return Err(format!("matrix mismatch: got {gotm:?}, want {want:?}"));
            }
            Ok(())
        }
    }
}

/// The evaluation paths a range query can take: step-wise on one thread, sliding range functions
/// on one thread, and the steps split between three threads (with and without sliding).
fn tunings() -> [Tuning; 4] {
    let one = |sliding| Tuning {
        sliding,
        threads: 1,
        min_steps_per_thread: 1,
        min_samples: 0,
    };
    let split = |sliding| Tuning {
        sliding,
        threads: 3,
        min_steps_per_thread: 1,
        min_samples: 0,
    };
    [one(false), one(true), split(false), split(true)]
}

/// Comparable form of a result: the value's debug text (bit-exact floats, NaN included), errors
/// by message, annotations as sets.
fn result_key(r: &Result<QueryResult, Error>) -> String {
    match r {
        Ok(r) => {
            let mut w = r.warnings.clone();
            w.sort();
            let mut i = r.infos.clone();
            i.sort();
            format!("{:?} {w:?} {i:?}", r.value)
        }
        Err(e) => format!("error {e}"),
    }
}

/// Fails unless every evaluation path returns exactly `res` for range query `e`.
fn same_on_every_path(
    rt: &tokio::runtime::Runtime,
    src: &MemSource,
    e: &Eval,
    opts: &EngineOptions,
    res: &Result<QueryResult, Error>,
) -> Result<(), String> {
    let want = result_key(res);
    for tuning in tunings() {
        let got = rt.block_on(range_query_tuned(
            src, &e.expr, e.start, e.end, e.step, opts, tuning,
        ));
        let got = result_key(&got);
        if got != want {
            return Err(format!(
                "{tuning:?} differs from the default path:\n  got  {got}\n  want {want}"
            ));
        }
    }
    Ok(())
}

fn show_matrix(m: &[MatrixSeries]) -> String {
    m.iter()
        .map(|s| {
            let pts: Vec<String> = s
                .samples
                .iter()
                .map(|p| format!("{}@{}", format_float(p.v), p.t / 1000))
                .chain(
                    s.histograms
                        .iter()
                        .map(|p| format!("{}@{}", json::histogram_json(&p.h), p.t / 1000)),
                )
                .collect();
            format!("{} [{}]", s.labels, pts.join(" "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Runs one script; returns (number of evals, failures).
fn run_script(name: &str, text: &str) -> (usize, Vec<String>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut src = MemSource::default();
    let mut failures = Vec::new();
    let mut count = 0;
    // Group lines into blocks: a command line followed by indented lines.
    let mut blocks: Vec<(usize, Vec<String>)> = Vec::new();
    for (no, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            match blocks.last_mut() {
                Some(b) => b.1.push(line.to_string()),
                None => failures.push(format!("{name}:{}: indented line outside a block", no + 1)),
            }
        } else {
            blocks.push((no + 1, vec![line.to_string()]));
        }
    }
    for (no, b) in blocks {
        let head = b[0].as_str();
        let r = if head.starts_with("load_with_nhcb") {
            load(&b, &mut src).map(|labels| add_nhcb(&mut src, &labels))
        } else if head.starts_with("load") {
            load(&b, &mut src).map(|_| ())
        } else if head == "clear" {
            src = MemSource::default();
            Ok(())
        } else if head.starts_with("eval") {
            count += 1;
            parse_eval(&b).and_then(|e| run_eval(&rt, &src, &e))
        } else {
            Err(format!("unknown command {head:?}"))
        };
        if let Err(e) = r {
            failures.push(format!("{name}:{no}: {head}\n    {e}"));
        }
    }
    (count, failures)
}

#[test]
fn golden_scripts() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/promql/testdata");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    let mut total = 0;
    let mut failures = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let (n, fs) = run_script(&name, &text);
        total += n;
        failures.extend(fs);
    }
    eprintln!(
        "promql golden: {total} eval cases, {} failures",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn series_notation() {
    let v = expand_values("1+2x2 _ stale -1-1x1 _x2 3x1").unwrap();
    let fs: Vec<String> = v
        .iter()
        .map(|p| match p {
            Pt::Gap => "_".into(),
            Pt::F(f) if crate::is_stale_nan(*f) => "stale".into(),
            Pt::F(f) => f.to_string(),
            Pt::H(_) => "h".into(),
        })
        .collect();
    assert_eq!(fs.join(" "), "1 3 5 _ stale -1 -2 _ _ 3 3");
}

#[test]
fn json_encoding() {
    use serde_json::json;
    let v = Value::Vector(vec![VectorSample {
        labels: Arc::new(Labels::from_pairs([("a", "b")])),
        t: 1_435_781_451_781,
        v: 1e21,
        h: None,
    }]);
    assert_eq!(
        result_json(&v),
        json!({"resultType":"vector","result":[{"metric":{"a":"b"},"value":[1435781451.781,"1e+21"]}]})
    );
    // Sample values follow Prometheus' jsonutil.MarshalFloat ('e' below 1e-6 and from 1e21 on);
    // found by the differential test against Prometheus (tests/promql_differential.rs).
    assert_eq!(format_value(6.412416890852332e-17), "6.412416890852332e-17");
    assert_eq!(
        format_value(-3.5199181345018506e26),
        "-3.5199181345018506e+26"
    );
    assert_eq!(
        format_value(-3.728571033097674e-8),
        "-3.728571033097674e-08"
    );
    assert_eq!(format_value(1e-6), "0.000001");
    assert_eq!(format_value(9.99e20), "999000000000000000000");
    assert_eq!(format_value(-3.72857e-319), "-3.72857e-319");
    assert_eq!(format_value(1e308), "1e+308");
    assert_eq!(format_value(0.0), "0");
    assert_eq!(format_value(-0.0), "-0");
    assert_eq!(format_value(f64::NAN), "NaN");
    assert_eq!(
        format_float(2154211742096150.0 + 1.25),
        "2154211742096151.2"
    );
    assert_eq!(format_float(1e21), "1000000000000000000000");
    assert_eq!(format_float(1e-7), "0.0000001");
    assert_eq!(format_float(f64::MIN_POSITIVE).len(), 2 + 307 + 17);
    // Ties between two shortest candidates go to the even digit, as in Go (the values are exact
    // binary fractions halfway between two 17-digit decimals).
    assert_eq!(
        format_value(2154211742096150.0 + 1.25),
        "2154211742096151.2"
    );
    assert_eq!(format_value(78497941276785.0 + 0.125), "78497941276785.12");
    assert_eq!(
        format_value(-(78497941276785.0 + 0.125)),
        "-78497941276785.12"
    );
    assert_eq!(format_value(0.30000000000000004), "0.30000000000000004");
    assert_eq!(format_value(123.456), "123.456");
    assert_eq!(format_value(1e20), "100000000000000000000");
    assert_eq!(format_value(1.5e-6), "0.0000015");
    assert_eq!(format_value(0.5), "0.5");
    assert_eq!(format_value(2.5), "2.5");
    assert_eq!(format_float(f64::NAN), "NaN");
    assert_eq!(format_float(f64::INFINITY), "+Inf");
    assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
    assert_eq!(format_float(0.1 + 0.2), "0.30000000000000004");
    assert_eq!(format_float(1e-7), "0.0000001");
    assert_eq!(format_float(-0.0), "-0");
    let s = Value::Scalar { t: 4000, v: 2.0 };
    assert_eq!(
        result_json(&s),
        json!({"resultType":"scalar","result":[4,"2"]})
    );
    let st = Value::String {
        t: 0,
        v: "x".into(),
    };
    assert_eq!(
        result_json(&st),
        json!({"resultType":"string","result":[0,"x"]})
    );
    let h = parse_hist(
        "{{schema:0 sum:10 count:6 z_bucket:1 z_bucket_w:0.001 buckets:[2 0 1] n_buckets:[2]}}",
    )
    .unwrap();
    let m = Value::Matrix(vec![MatrixSeries {
        labels: Arc::new(Labels::from_pairs([("__name__", "h")])),
        samples: vec![],
        histograms: vec![HistogramSample {
            t: 60_000,
            h: Arc::new(h),
        }],
    }]);
    assert_eq!(
        result_json(&m),
        json!({"resultType":"matrix","result":[{"metric":{"__name__":"h"},"histograms":[[60,{
        "count":"6","sum":"10","buckets":[
            [1,"-1","-0.5","2"],
            [3,"-0.001","0.001","1"],
            [0,"0.5","1","2"],
            [0,"2","4","1"]
        ]}]]}]})
    );
}

#[test]
fn errors_map_to_prometheus_types() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut src = MemSource::default();
    load(
        &[
            "load 1m".to_string(),
            "m{a=\"1\"} 0+1x100".to_string(),
            "m{a=\"2\"} 0+1x100".to_string(),
        ],
        &mut src,
    )
    .unwrap();
    let opts = EngineOptions::default();
    let e = rt
        .block_on(instant_query(&src, "sum(", 0, &opts))
        .unwrap_err();
    assert!(
        matches!(e, Error::BadData(ref m) if m.starts_with("parse error")),
        "{e}"
    );
    let small = EngineOptions {
        max_samples: 10,
        ..Default::default()
    };
    let e = rt
        .block_on(instant_query(&src, "m[1h]", 3_600_000, &small))
        .unwrap_err();
    assert!(
        matches!(e, Error::Execution(ref m) if m.contains("too many samples")),
        "{e}"
    );
    let e = rt
        .block_on(range_query(&src, "m", 0, 3_600_000, 60_000, &small))
        .unwrap_err();
    assert!(matches!(e, Error::Execution(_)), "{e}");
    let tiny = EngineOptions {
        timeout: Duration::from_nanos(1),
        ..Default::default()
    };
    let e = rt
        .block_on(range_query(&src, "rate(m[5m])", 0, 6_000_000, 1000, &tiny))
        .unwrap_err();
    assert!(matches!(e, Error::Timeout(_)), "{e}");
    let e = rt
        .block_on(range_query(&src, "m", 10, 0, 1, &opts))
        .unwrap_err();
    assert!(matches!(e, Error::BadData(_)), "{e}");
    let e = rt
        .block_on(range_query(&src, "m[5m]", 0, 10, 1, &opts))
        .unwrap_err();
    assert!(matches!(e, Error::BadData(_)), "{e}");
}

/// Feeds malformed and odd queries to the engine: errors are fine, panics are not.
#[test]
fn never_panics() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut src = MemSource::default();
    load(
        &[
            "load 1m".to_string(),
            "m{a=\"1\",le=\"1\"} 0+1x20 stale 1 NaN Inf -Inf".to_string(),
            "m{a=\"2\",le=\"+Inf\"} 5 4 3 _ 2".to_string(),
            "h {{schema:0 sum:5 count:4 buckets:[1 2 1]}}x10".to_string(),
            "hc {{custom_values:[1 2] sum:5 count:4 buckets:[1 2 1]}}x3".to_string(),
            "hw {{schema:40 sum:5 count:4 buckets:[1 2 1] offset:2147483646}}x3".to_string(),
            "hw2 {{schema:-40 sum:5 count:4 n_buckets:[1 2 1] n_offset:-2147483647}} {{schema:8 sum:1 count:9 buckets:[1]}}".to_string(),
        ],
        &mut src,
    )
    .unwrap();
    let base = [
        "",
        " ",
        "(",
        ")",
        "{}",
        "m{",
        "m}",
        "m[",
        "m[5m",
        "m[-5m]",
        "m[0s]",
        "m[5m:0s]",
        "m offset",
        "m @",
        "m @ foo",
        "1 +",
        "+",
        "-",
        "--1",
        "- - m",
        "!m",
        "m ==",
        "m == bool",
        "1 == 1",
        "1 == bool 1",
        "\"a\" + 1",
        "m + \"a\"",
        "m and 1",
        "1 or m",
        "sum",
        "sum()",
        "sum(m",
        "sum by (",
        "sum by (a) (m)",
        "sum without () (m)",
        "topk(m)",
        "topk(NaN, m)",
        "topk(1e300, m)",
        "topk(-1, m)",
        "topk(Inf, m)",
        "bottomk(1e19, m)",
        "limitk(NaN, m)",
        "limit_ratio(NaN, m)",
        "limit_ratio(2, m)",
        "quantile(2, m)",
        "quantile(NaN, m)",
        "count_values(\"\", m)",
        "count_values(\"a\", m)",
        "count_values(\"__name__\", m)",
        "rate(m)",
        "rate(m[5m])",
        "rate(m[1ms])",
        "rate(h[5m])",
        "rate(hc[5m])",
        "irate(h[5m])",
        "increase(m[5m:1ms])",
        "delta(m[5m])",
        "deriv(m[5m])",
        "predict_linear(m[5m], NaN)",
        "predict_linear(m[5m], Inf)",
        "histogram_quantile(0.5, m)",
        "histogram_quantile(NaN, m)",
        "histogram_quantile(2, h)",
        "histogram_quantile(-1, hc)",
        "histogram_quantile(0.5, rate(h[5m]))",
        "histogram_fraction(-Inf, Inf, h)",
        "histogram_fraction(NaN, 1, h)",
        "histogram_fraction(0, 1, hc)",
        "histogram_stddev(h)",
        "histogram_stdvar(hc)",
        "histogram_avg(h)",
        "histogram_count(m)",
        "label_replace(m, \"x\", \"$1\", \"a\", \"(\")",
        "label_replace(m, \"\", \"$1\", \"a\", \"(.*)\")",
        "label_replace(m, \"x\", \"${99}\", \"a\", \"(.*)\")",
        "label_join(m, \"x\", \"-\")",
        "label_join(m, \"x\", \"-\", \"a\", \"le\")",
        "sort_by_label(m, \"a\", \"le\")",
        "sort_desc(h)",
        "round(m, 0)",
        "round(m, NaN)",
        "round(m, -Inf)",
        "clamp(m, NaN, 1)",
        "clamp(m, 2, 1)",
        "clamp_min(h, 1)",
        "day_of_week(m)",
        "year(vector(1e30))",
        "month(vector(-1e30))",
        "hour(vector(NaN))",
        "minute(vector(-Inf))",
        "days_in_month(vector(-62135596800))",
        "timestamp(m)",
        "timestamp((m))",
        "timestamp(h)",
        "scalar(m)",
        "scalar(h)",
        "vector(scalar(m))",
        "time()",
        "pi()",
        "start()",
        "end()",
        "step()",
        "range()",
        "m @ start()",
        "m @ end()",
        "m @ -1e15",
        "m offset 1000y",
        "m offset -1000y",
        "m[5m] @ 1e12",
        "m[1000y]",
        "m[5m:1ms]",
        "m[10m:7s] offset 3s",
        "(m)[5m:]",
        "rate((m)[5m:30s])",
        "max_over_time(m[5m:][5m:])",
        "absent(m)",
        "absent(nope{a=\"b\",a=\"c\"})",
        "absent_over_time(nope[5m])",
        "absent_over_time(nope[5m:])",
        "absent(sum(nope))",
        "quantile_over_time(2, m[5m])",
        "quantile_over_time(NaN, m[5m])",
        "mad_over_time(m[5m])",
        "double_exponential_smoothing(m[5m], 0, 1)",
        "double_exponential_smoothing(m[5m], 0.5, 0.5)",
        "double_exponential_smoothing(h[5m], 0.5, 0.5)",
        "stddev_over_time(h[5m])",
        "avg_over_time(h[5m])",
        "sum_over_time(h[5m])",
        "last_over_time(h[5m])",
        "first_over_time(m[5m])",
        "ts_of_max_over_time(m[5m])",
        "changes(h[5m])",
        "resets(h[5m])",
        "m / on(a) group_left m",
        "m * on() group_right m",
        "m + ignoring(a, le) m",
        "m == bool on(a) m",
        "h + h",
        "h * 2",
        "2 * h",
        "h / 0",
        "h - m",
        "h == h",
        "h > 1",
        "-h",
        "sum(h)",
        "avg(h)",
        "max(h)",
        "topk(1, h)",
        "count_values(\"x\", h)",
        "quantile(0.5, h)",
        "stddev(h)",
        "group(h)",
        "sum(h) + sum(m)",
        "m % 0",
        "m ^ Inf",
        "m atan2 m",
        "atan2(m, m)",
        "1 atan2 2",
        "ln(-1)",
        "exp(1e300)",
        "sqrt(-1)",
        "acosh(0)",
        "atanh(2)",
        "sgn(NaN)",
        "deg(Inf)",
        "m{a=~\"(\"}",
        "m{a=~\"a{1,2}\"}",
        "{a=~\".*\"}",
        "{__name__=~\"m|h\"}",
        "rate({__name__=~\"m|h\"}[5m])",
        "m{a=\"1\" or a=\"2\"}",
        "0x",
        "1e400",
        "-1e400",
        "NaN",
        "Inf",
        "-Inf",
        "\"\\x\"",
        "`raw`",
        "'single'",
        "m[5m] + 1",
        "sum(m[5m])",
        "rate(1)",
        "rate(m[5m], 1)",
        "foo()",
        "info(m)",
        "histogram_quantiles(h, \"q\", 0.5)",
        "max_of(1, 2)",
        "min_of(NaN, 1)",
        "sort(m) + sort_desc(m)",
        "limitk(1, h)",
        "limit_ratio(-0.5, m)",
        "rate(hw[5m])",
        "sum(hw)",
        "hw + hw2",
        "histogram_quantile(0.5, hw)",
        "histogram_fraction(0, 1, hw2)",
        "histogram_stddev(hw)",
        "rate(hw2[5m])",
        "resets(hw2[5m])",
        "sum({__name__=~\"hw.*\"})",
        "hw / 0",
        "count_values(\"x\", hw2)",
    ];
    let mut queries: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    // Mutations: truncations and duplicated characters of the valid ones.
    for q in base.iter().take(120) {
        for cut in [1, 3, 7] {
            if q.len() > cut && q.is_char_boundary(q.len() - cut) {
                queries.push(q[..q.len() - cut].to_string());
            }
        }
        queries.push(format!("{q}{q}"));
        queries.push(format!("({q})[5m:1m]"));
    }
    let opts = EngineOptions {
        timeout: Duration::from_secs(5),
        max_samples: 100_000,
        ..Default::default()
    };
    let mut n = 0;
    for q in &queries {
        for (i, t) in [0i64, 600_000, -600_000].into_iter().enumerate() {
            let q2 = q.clone();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                rt.block_on(async {
                    let _ = instant_query(&src, &q2, t, &opts).await;
                    if i == 0 {
                        let _ = range_query(&src, &q2, 0, 1_200_000, 60_000, &opts).await;
                        let _ = range_query(&src, &q2, -1_000, 1_000, 7, &opts).await;
                    }
                })
            }));
            assert!(r.is_ok(), "engine panicked on {q:?} at {t}");
            n += 1;
        }
    }
    assert!(n > 300);
}

/// Translates an upstream promqltest script into our dialect (blank-line separated blocks, `expect`
/// lines folded into the `eval_*` variants). Evals we cannot express are dropped and counted.
fn translate_upstream(text: &str) -> (String, usize) {
    let mut out = String::new();
    let mut skipped = 0;
    let mut block: Vec<String> = Vec::new();
    let flush = |block: &mut Vec<String>, out: &mut String, skipped: &mut usize| {
        if block.is_empty() {
            return;
        }
        let head = block[0].trim().to_string();

        if head.starts_with("eval") {
            let (kind, rest) = head.split_once(' ').unwrap_or((&head, ""));
            let mut kind = kind.to_string();
            let mut lines = Vec::new();
            let mut skip = false;
            for l in &block[1..] {
                let t = l.trim();
                if let Some(e) = t.strip_prefix("expect ") {
                    let e = e.trim();
                    if e.starts_with("fail") {
                        kind = "eval_fail".into();
                    } else if e.starts_with("ordered") {
                        kind = "eval_ordered".into();
                    } else if e.starts_with("warn") {
                        kind = "eval_warn".into();
                    } else if e.starts_with("info") && kind == "eval" {
                        kind = "eval_info".into();
                    } else if let Some(s) = e.strip_prefix("string ") {
                        lines.push(s.trim().trim_matches('`').to_string());
                    } else if e.starts_with("range vector") {
                        skip = true;
                    }
                    continue;
                }
                if t.starts_with("expected_fail") {
                    continue;
                }
                lines.push(t.to_string());
            }
            if skip {
                *skipped += 1;
                block.clear();
                return;
            }
            out.push_str(&format!("{kind} {rest}\n"));
            for l in lines {
                out.push_str(&format!("  {l}\n"));
            }
        } else {
            out.push_str(&block[0]);
            out.push('\n');
            for l in &block[1..] {
                out.push_str(&format!("  {}\n", l.trim()));
            }
        }
        out.push('\n');
        block.clear();
    };
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') {
            continue;
        }
        if t.is_empty() {
            flush(&mut block, &mut out, &mut skipped);
            continue;
        }
        let is_cmd = !line.starts_with(char::is_whitespace)
            && (t.starts_with("load") || t.starts_with("eval") || t == "clear");
        if is_cmd {
            flush(&mut block, &mut out, &mut skipped);
        }
        block.push(line.to_string());
    }
    flush(&mut block, &mut out, &mut skipped);
    (out, skipped)
}

/// Compatibility probe against a local checkout of upstream's promqltest corpus:
/// `PROMQLTEST_DIR=…/promql/promqltest/testdata cargo test -p metrics --lib upstream_corpus -- --ignored --nocapture`.
/// Reports divergences; never asserts (the corpus also covers features we do not implement).
#[test]
#[ignore]
fn upstream_corpus() {
    let Ok(dir) = std::env::var("PROMQLTEST_DIR") else {
        eprintln!("PROMQLTEST_DIR not set");
        return;
    };
    let only = std::env::var("PROMQLTEST_ONLY").ok();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        let (text, skipped) = translate_upstream(&std::fs::read_to_string(&f).unwrap());
        let (n, fails) = run_script(&name, &text);
        eprintln!(
            "== {name}: {n} evals, {} failed, {skipped} skipped",
            fails.len()
        );
        for x in fails.iter().take(400) {
            eprintln!("{x}");
        }
    }
}

/// Rough throughput probe (debug builds are slow; run with `--release --ignored --nocapture`).
#[test]
#[ignore]
fn throughput_probe() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut src = MemSource::default();
    for i in 0..1000 {
        let samples = (0..5760)
            .map(|k| Sample {
                t: k * 15_000,
                v: (k * (i % 7 + 1)) as f64,
            })
            .collect();
        src.series.push(SeriesData {
            labels: Labels::from_pairs([
                ("__name__", "m".to_string()),
                ("i", i.to_string()),
                ("j", (i % 10).to_string()),
            ]),
            samples,
            histograms: Vec::new(),
        });
    }
    let opts = EngineOptions::default();
    for q in [
        "sum by (j) (rate(m[5m]))",
        "max_over_time(rate(m[5m])[30m:1m])",
        "topk(5, m)",
        "m / on(i) m",
    ] {
        let t0 = std::time::Instant::now();
        let r = rt
            .block_on(range_query(
                &src,
                q,
                3_600_000,
                86_400_000 - 1,
                60_000,
                &opts,
            ))
            .unwrap();
        let n = match &r.value {
            Value::Matrix(m) => m.len(),
            _ => 0,
        };
        eprintln!("{q}: {n} series in {:?}", t0.elapsed());
    }
}

/// The API serves queries from axum handlers, which need `Send` futures.
#[test]
fn query_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let src = MemSource::default();
    let opts = EngineOptions::default();
    let f = instant_query(&src, "1", 0, &opts);
    assert_send(&f);
    let g = range_query(&src, "1", 0, 0, 1, &opts);
    assert_send(&g);
}

/// The `heimdall bench query` data and queries in process, through the TSDB's blocks, with the
/// time split into fetch (select + decode) and evaluation. `--release --ignored --nocapture`;
/// `PROMQL_BENCH_SPAN_H` (default 24) and `PROMQL_BENCH_QUERIES` (substring filter) narrow it.
#[test]
#[ignore]
fn bench_query_shapes() {
    use crate::tsdb::MetricsStore;
    use common::config::{Duration as CfgDuration, StorageConfig};
    use common::limits::{Limits, Overrides};
    use common::{TenantId, TenantSet};
    use storage::block::BlockStore;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let span_h: i64 = std::env::var("PROMQL_BENCH_SPAN_H")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let filter = std::env::var("PROMQL_BENCH_QUERIES").unwrap_or_default();
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockStore::in_memory();
    let cfg = StorageConfig {
        data_dir: dir.path().to_path_buf(),
        block_duration: CfgDuration::from_millis(2 * 3_600_000),
        wal_fsync: false,
        ..StorageConfig::default()
    };
    let limits = Limits {
        out_of_order_time_window: CfgDuration::ZERO,
        max_active_series: 0,
        ..Limits::default()
    };
    let tenant = TenantId::new("bench").unwrap();
    let (store, end) = rt.block_on(async {
        let s = MetricsStore::open(&cfg, Overrides::fixed(limits), blocks.clone())
            .await
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let steps = (span_h * 3_600_000 / 15_000) as usize;
        let t0 = (now - span_h * 3_600_000) / 15_000 * 15_000;
        let mut labels = Vec::new();
        for i in 0..2000 {
            labels.push((
                Labels::from_pairs([
                    ("__name__", "bench_requests_total".to_string()),
                    ("instance", format!("host-{}:9100", i / 50)),
                    ("job", "api".to_string()),
                    ("route", format!("/r{}", i % 50)),
                ]),
                None,
            ));
        }
        for h in 0..50 {
            for b in 0..100usize {
                let le = if b == 99 {
                    "+Inf".to_string()
                } else {
                    format_float(0.001 * 1.1f64.powi(b as i32))
                };
                labels.push((
                    Labels::from_pairs([
                        ("__name__", "bench_latency_seconds_bucket".to_string()),
                        ("handler", format!("h{}", h % 10)),
                        ("instance", format!("host-{}:9100", h / 10)),
                        ("job", "api".to_string()),
                        ("le", le),
                    ]),
                    Some(b),
                ));
            }
        }
        let value = |series: usize, bucket: Option<usize>, k: usize| match bucket {
            None => {
                (k as f64) * (3.0 + (series % 5) as f64)
                    + (k as f64 * 0.37 * (series % 3) as f64).floor()
            }
            Some(b) => {
                let below = 100.0 / (1.0 + (-((b as f64) - 40.0) / 8.0).exp());
                (k as f64) * below.round()
            }
        };
        let mut k = 0;
        while k < steps {
            let e = (k + 40).min(steps);
            for chunk in labels.chunks(100).enumerate() {
                let (c, chunk) = chunk;
                let series = chunk
                    .iter()
                    .enumerate()
                    .map(|(j, (l, b))| crate::SeriesWrite {
                        labels: l.clone(),
                        samples: (k..e)
                            .map(|kk| Sample {
                                t: t0 + kk as i64 * 15_000,
                                v: value(c * 100 + j, *b, kk),
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect();
                s.write(
                    &tenant,
                    crate::WriteBatch {
                        series,
                        metadata: vec![],
                    },
                )
                .await
                .unwrap();
            }
            k = e;
        }
        s.flush_all_to_blocks().await.unwrap();
        (s, now / 1000 * 1000)
    });
    let src = store.source(TenantSet::single(tenant));
    let opts = EngineOptions::default();
    let queries = [
        "sum(rate(bench_requests_total[5m]))",
        "sum by (instance) (rate(bench_requests_total[5m]))",
        "topk(10, rate(bench_requests_total[5m]))",
        "histogram_quantile(0.99, sum by (le) (rate(bench_latency_seconds_bucket[5m])))",
        "histogram_quantile(0.9, sum by (le, instance) (rate(bench_latency_seconds_bucket[5m])))",
    ];
    for (rname, range, step) in [
        ("1h", 3_600_000i64, 15_000i64),
        ("24h", 86_400_000, 120_000),
    ] {
        if range > span_h * 3_600_000 {
            continue;
        }
        for q in queries.iter().filter(|q| q.contains(filter.as_str())) {
            let mut best = (f64::MAX, f64::MAX, f64::MAX);
            for _ in 0..3 {
                let t0 = std::time::Instant::now();
                let expr = parse(q).unwrap();
                let sel = plan::collect(&expr, end - range, end, opts.lookback_delta_ms).unwrap();
                let data = rt.block_on(plan::fetch(&src, &sel)).unwrap();
                let fetched = t0.elapsed().as_secs_f64() * 1000.0;
                let t1 = std::time::Instant::now();
                let r = rt
                    .block_on(range_query(&src, q, end - range, end, step, &opts))
                    .unwrap();
                let total = t1.elapsed().as_secs_f64() * 1000.0;
                let t2 = std::time::Instant::now();
                let body = serde_json::to_vec(&result_json(&r.value)).unwrap();
                let js = t2.elapsed().as_secs_f64() * 1000.0;
                drop((data, body));
                best = (best.0.min(fetched), best.1.min(total), best.2.min(js));
            }
            eprintln!(
                "{rname:>4} {q}: fetch {:.1}ms, query (fetch+eval) {:.1}ms, json {:.1}ms",
                best.0, best.1, best.2
            );
        }
    }
}

/// A small deterministic generator (xorshift) for the randomized path comparisons.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Random float series with irregular intervals, jitter, gaps, stale markers, counter resets,
/// repeated values, NaN and ±Inf, so the sliding windows meet every edge the step-wise path does.
fn random_source(rng: &mut Rng) -> MemSource {
    let mut src = MemSource::default();
    for i in 0..12 {
        let mut samples = Vec::new();
        let mut t = rng.below(60_000) as i64;
        let mut v = rng.below(100) as f64;
        while t < 3 * 3_600_000 {
            match rng.below(40) {
                0 => samples.push(Sample {
                    t,
                    v: f64::from_bits(STALE_NAN_BITS),
                }),
                1 => t += rng.below(20 * 60_000) as i64, // gap
                2 => v = rng.below(5) as f64,            // counter reset
                3 => samples.push(Sample { t, v: f64::NAN }),
                4 => samples.push(Sample {
                    t,
                    v: f64::INFINITY,
                }),
                _ => {
                    if rng.below(4) > 0 {
                        v += rng.below(1000) as f64 / 10.0;
                    }
                    samples.push(Sample { t, v });
                }
            }
            t += 1 + rng.below(45_000) as i64;
        }
        let le = ["0.1", "0.5", "1", "+Inf"][i % 4];
        src.series.push(SeriesData {
            labels: Labels::from_pairs([
                ("__name__", "m".to_string()),
                ("i", i.to_string()),
                ("g", (i % 3).to_string()),
                ("le", le.to_string()),
            ]),
            samples,
            histograms: Vec::new(),
        });
    }
    src
}

#[test]
fn sliding_and_split_paths_match_stepwise_on_random_series() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let funcs = [
        "rate(m[R])",
        "increase(m[R])",
        "delta(m[R])",
        "irate(m[R])",
        "idelta(m[R])",
        "deriv(m[R])",
        "predict_linear(m[R], 600)",
        "changes(m[R])",
        "resets(m[R])",
        "avg_over_time(m[R])",
        "min_over_time(m[R])",
        "max_over_time(m[R])",
        "sum_over_time(m[R])",
        "count_over_time(m[R])",
        "quantile_over_time(0.3, m[R])",
        "stddev_over_time(m[R])",
        "stdvar_over_time(m[R])",
        "last_over_time(m[R])",
        "first_over_time(m[R])",
        "present_over_time(m[R])",
        "mad_over_time(m[R])",
        "double_exponential_smoothing(m[R], 0.5, 0.3)",
        "ts_of_max_over_time(m[R])",
        "ts_of_min_over_time(m[R])",
        "ts_of_first_over_time(m[R])",
        "ts_of_last_over_time(m[R])",
        "sum by (g) (rate(m[R]))",
        "topk(2, rate(m[R]))",
        "histogram_quantile(0.9, sum by (le, g) (rate(m[R])))",
        "histogram_fraction(0, 0.5, sum by (le) (increase(m[R])))",
        "max_over_time(rate(m[R])[10m:1m])",
        "rate(m[R] offset 7m) / on(i) group_left rate(m[R])",
        "rate(m[R] @ 3600)",
    ];
    let ranges = ["1m", "5m", "17m", "1h"];
    let opts = EngineOptions::default();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut compared = 0;
    for round in 0..4 {
        let src = random_source(&mut rng);
        for f in funcs {
            let q = f.replace('R', ranges[rng.below(4) as usize]);
            let step = [7_000, 15_000, 60_000, 180_000][rng.below(4) as usize];
            let start = rng.below(3_600_000) as i64;
            let end = start + rng.below(2 * 3_600_000) as i64;
            let results: Vec<String> = tunings()
                .into_iter()
                .map(|tn| {
                    result_key(
                        &rt.block_on(range_query_tuned(&src, &q, start, end, step, &opts, tn)),
                    )
                })
                .collect();
            for (i, r) in results.iter().enumerate().skip(1) {
                assert_eq!(
                    r, &results[0],
                    "round {round}: {q} from {start} to {end} step {step}: path {i} differs"
                );
            }
            assert!(
                results[0].contains("Matrix"),
                "{q}: {}",
                &results[0][..results[0].len().min(300)]
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 4 * funcs.len());
}

/// The `max_samples` check fails at the same point whether or not the steps are split.
#[test]
fn split_evaluation_keeps_the_max_samples_limit() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rng = Rng(42);
    let src = random_source(&mut rng);
    for max in [10, 100, 500, 1000, 2000, 5000, 100_000] {
        let opts = EngineOptions {
            max_samples: max,
            ..Default::default()
        };
        let results: Vec<String> = tunings()
            .into_iter()
            .map(|tn| {
                result_key(&rt.block_on(range_query_tuned(
                    &src,
                    "rate(m[5m])",
                    0,
                    3 * 3_600_000,
                    60_000,
                    &opts,
                    tn,
                )))
            })
            .collect();
        for r in &results[1..] {
            assert_eq!(r, &results[0], "max_samples {max}");
        }
    }
}
