//! TraceQL metrics over in-memory traces: `rate`, `count_over_time`, `sum/min/max/avg_over_time`,
//! `quantile_over_time`, `histogram_over_time` with `by (…)`, and the second stage (`> x`,
//! `topk`, `bottomk`).
//!
//! Every span the search pipeline matches is placed in the step interval its **start time**
//! falls into: the range `[start, end)` is aligned down to a multiple of `step`, interval `i`
//! covers `[start + i·step, start + (i+1)·step)` and its sample carries timestamp
//! `start + i·step`. Durations are measured in seconds (as Tempo reports them). `rate` is the
//! interval count divided by the step in seconds. Empty intervals are 0 for counts and rates and
//! absent for the value functions. `quantile_over_time` yields one series per quantile with
//! label `p`; `histogram_over_time` counts values per power-of-two bucket with label `__bucket`
//! (the bucket's upper bound, in seconds for durations).
//!
//! Grouping follows Tempo: `by` values that are nil are left out of a series' labels, and a group
//! whose values are all nil keeps the first `by` label with a nil value.
//!
//! `compare({filter}, topN, start, end)` splits the matching spans into a *selection* (the filter
//! holds and, when `start`/`end` (unix ns) are given, the span starts in `(start, end]`) and a
//! *baseline* (the rest), and counts per interval every attribute value of the spans
//! (`span.*`, `resource.*`, `name`, `status`, `kind`, `statusMessage`, `rootName`,
//! `rootServiceName`, `instrumentation:name`/`version`; durations, ids and arrays are not
//! grouped). Series are labelled `__meta_type` = `baseline` / `selection` plus the attribute and
//! value (the `topN` values with the largest totals per attribute, default 10), and
//! `baseline_total` / `selection_total` plus the attribute with a nil value.
//!
//! Exemplars ([`MetricsEvaluator::with_exemplars`]): at most one span per trace (the first
//! matching span in the range) and at most the requested number overall; per series they are
//! spread over time in `n/2` equal buckets of at most two each. An exemplar carries `trace:id`
//! and `span:id`, the span start, and the span's value (for counts and rates, the sample of its
//! interval); exemplars of intervals without a sample are dropped.

use std::collections::{BTreeMap, HashMap};

use super::ast::*;
use super::eval::{compare, Ctx, Evaluator};
use crate::model::Trace;
use crate::Error;

/// One output series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Group labels (`by` field as printed → value), then `p` / `__bucket` where they apply.
    pub labels: Vec<(String, Static)>,
    /// One sample per interval (`None`: no value).
    pub samples: Vec<Option<f64>>,
    /// Exemplars, in observation order.
    pub exemplars: Vec<Exemplar>,
}

/// A span standing for a series' sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// `trace:id` and `span:id` (hex).
    pub labels: Vec<(String, Static)>,
    /// The span's value (seconds for durations), or the interval's sample for counts and rates.
    pub value: f64,
    /// Span start, unix ms.
    pub timestamp_ms: u64,
}

/// Exemplars returned when a query asks for none explicitly (Tempo's default).
pub const DEFAULT_EXEMPLARS: usize = 100;
/// Most exemplars one query may ask for.
pub const MAX_EXEMPLARS: usize = 10_000;
/// Most values `compare()` may keep per attribute.
pub const MAX_COMPARE_TOP_N: i64 = 1000;

/// Spreads a series' exemplars over time: `n/2` equal buckets over the range, two per bucket.
#[derive(Debug, Clone, Default)]
struct ExemplarBuckets {
    counts: Vec<u32>,
    total: usize,
}

impl ExemplarBuckets {
    /// Whether an exemplar at `ts_ns` may be added (and counts it).
    fn admit(&mut self, max: usize, start_ns: u64, end_ns: u64, ts_ns: u64) -> bool {
        if max == 0 || self.total >= max || ts_ns < start_ns || ts_ns > end_ns {
            return false;
        }
        let n = (max / 2).max(1);
        if self.counts.is_empty() {
            self.counts = vec![0; n];
        }
        let width = ((end_ns - start_ns) / n as u64).max(1);
        let b = (((ts_ns - start_ns) / width) as usize).min(n - 1);
        if self.counts[b] >= 2 {
            return false;
        }
        self.counts[b] += 1;
        self.total += 1;
        true
    }
}

/// The result of a metrics query.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsResult {
    /// Timestamp of the first interval (aligned start), unix ns.
    pub start_ns: u64,
    /// Step, ns.
    pub step_ns: u64,
    /// The series, sorted by labels' printed form.
    pub series: Vec<Series>,
}

impl MetricsResult {
    /// The timestamp of interval `i`.
    pub fn timestamp(&self, i: usize) -> u64 {
        self.start_ns + i as u64 * self.step_ns
    }
}

/// Most intervals one query may produce.
pub const MAX_INTERVALS: u64 = 11_000;
/// Most series one query may produce (further groups are dropped).
pub const MAX_SERIES: usize = 10_000;

/// Per-group accumulators: one `Vec` per interval.
#[derive(Debug, Default, Clone)]
struct Acc {
    count: Vec<u64>,
    sum: Vec<f64>,
    min: Vec<f64>,
    max: Vec<f64>,
    values: Vec<Vec<f64>>,
    /// `(bucket upper bound, counts per interval)`.
    buckets: Vec<(f64, Vec<u64>)>,
    exemplars: Vec<(Exemplar, usize, Option<f64>)>,
    exemplar_buckets: ExemplarBuckets,
}

/// `compare()` counters: attribute → value key → (value, counts per interval).
type CompareCounts = BTreeMap<String, BTreeMap<String, (Static, Vec<f64>)>>;

/// `compare()` state.
#[derive(Debug, Default)]
struct CompareState {
    baseline: CompareCounts,
    selection: CompareCounts,
    baseline_total: BTreeMap<String, Vec<f64>>,
    selection_total: BTreeMap<String, Vec<f64>>,
    /// Exemplars per (is selection, attribute).
    exemplars: Vec<(bool, Vec<String>, Exemplar)>,
}

/// Group key (label name → hashable value) → (labels, accumulators).
type Groups = HashMap<Vec<(String, StaticKey)>, (Vec<(String, Static)>, Acc)>;

/// A streaming metrics evaluation: feed traces with [`MetricsEvaluator::observe`], then
/// [`MetricsEvaluator::finish`].
#[derive(Debug)]
pub struct MetricsEvaluator<'q> {
    eval: Evaluator<'q>,
    agg: &'q MetricsAggregate,
    start_ns: u64,
    step_ns: u64,
    end_ns: u64,
    intervals: usize,
    groups: Groups,
    max_exemplars: usize,
    exemplars_taken: usize,
    compare: Option<CompareState>,
}

/// A hashable form of a label value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct StaticKey(String);

impl<'q> MetricsEvaluator<'q> {
    /// Prepares `q` (which must end in a metrics function) for `[start_ns, end_ns)` in steps
    /// of `step_ns`. No exemplars are collected until [`Self::with_exemplars`].
    pub fn new(q: &'q Query, start_ns: u64, end_ns: u64, step_ns: u64) -> Result<Self, Error> {
        let Some(agg) = &q.metrics else {
            return Err(Error::BadRequest(
                "not a metrics query: it must end with a metrics function such as rate()".into(),
            ));
        };
        let mut compare = None;
        if let MetricsFunc::Compare {
            top_n,
            start_ns: s,
            end_ns: e,
            ..
        } = &agg.func
        {
            let n = top_n.unwrap_or(10);
            if !(1..=MAX_COMPARE_TOP_N).contains(&n) {
                return Err(Error::BadRequest(format!(
                    "compare() top number of values must be an integer between 1 and {MAX_COMPARE_TOP_N}"
                )));
            }
            let (s, e) = (s.unwrap_or(0), e.unwrap_or(0));
            if s != 0 || e != 0 {
                if s <= 0 || e <= 0 {
                    return Err(Error::BadRequest(
                        "compare() timestamps must be positive integer unix nanoseconds".into(),
                    ));
                }
                if e <= s {
                    return Err(Error::BadRequest(
                        "compare() end timestamp must be greater than start timestamp".into(),
                    ));
                }
            }
            if !agg.by.is_empty() {
                return Err(Error::BadRequest("compare() does not take by()".into()));
            }
            compare = Some(CompareState::default());
        }
        if step_ns == 0 {
            return Err(Error::BadRequest("step must be greater than 0".into()));
        }
        if end_ns <= start_ns {
            return Err(Error::BadRequest("end must be after start".into()));
        }
        let start = start_ns - start_ns % step_ns;
        let n = (end_ns - start).div_ceil(step_ns);
        if n > MAX_INTERVALS {
            return Err(Error::BadRequest(format!(
                "exceeded maximum number of intervals ({MAX_INTERVALS}): reduce the range or increase the step"
            )));
        }
        Ok(MetricsEvaluator {
            eval: Evaluator::new(q),
            agg,
            start_ns: start,
            step_ns,
            end_ns: start + n * step_ns,
            intervals: n as usize,
            groups: HashMap::new(),
            max_exemplars: 0,
            exemplars_taken: 0,
            compare,
        })
    }

    /// Collects up to `n` exemplars (capped at [`MAX_EXEMPLARS`]; 0 for none).
    pub fn with_exemplars(mut self, n: usize) -> Self {
        self.max_exemplars = n.min(MAX_EXEMPLARS);
        self
    }

    /// Adds the matching spans of one trace.
    pub fn observe(&mut self, trace: &Trace) {
        let ctx = Ctx::new(trace);
        let sets = self.eval.eval_with(&ctx);
        let mut seen = vec![false; trace.spans.len()];
        let mut want_exemplar = self.exemplars_taken < self.max_exemplars;
        for ss in &sets {
            for m in &ss.spans {
                if std::mem::replace(&mut seen[m.index], true) {
                    continue;
                }
                let Some(i) = self.interval_of(trace.spans[m.index].start_ns) else {
                    continue;
                };
                let counted = if self.compare.is_some() {
                    self.observe_compare(&ctx, m.index, i, want_exemplar);
                    true
                } else {
                    self.observe_span(&ctx, m.index, i, want_exemplar)
                };
                if want_exemplar && counted {
                    want_exemplar = false;
                    self.exemplars_taken += 1;
                }
            }
        }
    }

    /// The interval a span starting at `start_ns` counts in.
    fn interval_of(&self, start_ns: u64) -> Option<usize> {
        if start_ns < self.start_ns {
            return None;
        }
        let i = ((start_ns - self.start_ns) / self.step_ns) as usize;
        (i < self.intervals).then_some(i)
    }

    fn exemplar(&self, ctx: &Ctx<'_>, idx: usize, value: f64) -> Exemplar {
        let span = &ctx.trace.spans[idx];
        Exemplar {
            labels: vec![
                ("trace:id".into(), Static::Str(hex::encode(span.trace_id))),
                ("span:id".into(), Static::Str(hex::encode(span.span_id))),
            ],
            value,
            timestamp_ms: span.start_ns / 1_000_000,
        }
    }

    /// `compare()`: counts every groupable attribute value of the span.
    fn observe_compare(&mut self, ctx: &Ctx<'_>, idx: usize, i: usize, exemplar: bool) {
        let agg = self.agg;
        let MetricsFunc::Compare {
            filter,
            start_ns,
            end_ns,
            ..
        } = &agg.func
        else {
            return;
        };
        let span = &ctx.trace.spans[idx];
        let (s, e) = (start_ns.unwrap_or(0), end_ns.unwrap_or(0));
        let in_window =
            (s <= 0 && e <= 0) || (span.start_ns as i64 > s && span.start_ns as i64 <= e);
        let selected = in_window
            && match &**filter {
                SpansetExpr::Filter(f) => {
                    self.eval.values(ctx, f, idx).contains(&Static::Bool(true))
                }
                _ => false,
            };
        let attrs = compare_attributes(ctx, idx);
        let n = self.intervals;
        let ex = exemplar.then(|| self.exemplar(ctx, idx, f64::NAN));
        let Some(st) = self.compare.as_mut() else {
            return;
        };
        let (dest, totals) = if selected {
            (&mut st.selection, &mut st.selection_total)
        } else {
            (&mut st.baseline, &mut st.baseline_total)
        };
        let mut names = Vec::with_capacity(attrs.len());
        for (name, v) in attrs {
            let key = format!("{v:?}");
            let values = dest.entry(name.clone()).or_default();
            if values.len() < MAX_SERIES || values.contains_key(&key) {
                values.entry(key).or_insert_with(|| (v, vec![0.0; n])).1[i] += 1.0;
            }
            totals.entry(name.clone()).or_insert_with(|| vec![0.0; n])[i] += 1.0;
            names.push(name);
        }
        if let Some(ex) = ex {
            st.exemplars.push((selected, names, ex));
        }
    }

    /// Adds one span to its group; false when it has no value to add.
    fn observe_span(&mut self, ctx: &Ctx<'_>, idx: usize, i: usize, exemplar: bool) -> bool {
        let span = &ctx.trace.spans[idx];
        let mut labels = Vec::with_capacity(self.agg.by.len());
        for e in &self.agg.by {
            if let Some(v) = self.eval.values(ctx, e, idx).into_iter().next() {
                labels.push((e.to_string(), v));
            }
        }
        if labels.is_empty() {
            if let Some(first) = self.agg.by.first() {
                labels.push((first.to_string(), Static::Nil));
            }
        }
        let (value, is_dur) = match &self.agg.func {
            MetricsFunc::Rate | MetricsFunc::CountOverTime | MetricsFunc::Compare { .. } => {
                (0.0, false)
            }
            MetricsFunc::SumOverTime(e)
            | MetricsFunc::MinOverTime(e)
            | MetricsFunc::MaxOverTime(e)
            | MetricsFunc::AvgOverTime(e)
            | MetricsFunc::QuantileOverTime(e, _)
            | MetricsFunc::HistogramOverTime(e) => {
                let v = self.eval.values(ctx, e, idx).into_iter().next();
                match v.as_ref().and_then(metric_number) {
                    Some(v) => v,
                    None => return false,
                }
            }
        };
        let key: Vec<(String, StaticKey)> = labels
            .iter()
            .map(|(k, v)| (k.clone(), StaticKey(format!("{v:?}"))))
            .collect();
        let n = self.intervals;
        if !self.groups.contains_key(&key) && self.groups.len() >= MAX_SERIES {
            return false;
        }
        let ex = exemplar.then(|| self.exemplar(ctx, idx, value));
        let (start_ns, end_ns, max_ex) = (self.start_ns, self.end_ns, self.max_exemplars);
        let (_, acc) = self.groups.entry(key).or_insert_with(|| {
            (
                labels,
                Acc {
                    count: vec![0; n],
                    sum: vec![0.0; n],
                    min: vec![f64::INFINITY; n],
                    max: vec![f64::NEG_INFINITY; n],
                    values: Vec::new(),
                    buckets: Vec::new(),
                    exemplars: Vec::new(),
                    exemplar_buckets: ExemplarBuckets::default(),
                },
            )
        });
        if let Some(ex) = ex {
            if acc
                .exemplar_buckets
                .admit(max_ex, start_ns, end_ns, span.start_ns)
            {
                let bucket = matches!(self.agg.func, MetricsFunc::HistogramOverTime(_))
                    .then(|| bucket_of(value, is_dur));
                acc.exemplars.push((ex, i, bucket));
            }
        }
        acc.count[i] += 1;
        acc.sum[i] += value;
        acc.min[i] = acc.min[i].min(value);
        acc.max[i] = acc.max[i].max(value);
        match &self.agg.func {
            MetricsFunc::QuantileOverTime(..) => {
                if acc.values.is_empty() {
                    acc.values = vec![Vec::new(); n];
                }
                acc.values[i].push(value);
            }
            MetricsFunc::HistogramOverTime(_) => {
                let b = bucket_of(value, is_dur);
                match acc.buckets.iter_mut().find(|(x, _)| *x == b) {
                    Some((_, c)) => c[i] += 1,
                    None => {
                        let mut c = vec![0; n];
                        c[i] = 1;
                        acc.buckets.push((b, c));
                    }
                }
            }
            _ => {}
        }
        true
    }

    /// The series, with the second stage applied.
    pub fn finish(self, second_stage: &[SecondStage]) -> MetricsResult {
        let step_s = self.step_ns as f64 / 1e9;
        let mut series = Vec::new();
        if let Some(st) = self.compare {
            let top_n = match &self.agg.func {
                MetricsFunc::Compare { top_n, .. } => top_n.unwrap_or(10).max(1) as usize,
                _ => 10,
            };
            compare_series(st, top_n, self.max_exemplars, &mut series);
        }
        for (_, (labels, acc)) in self.groups {
            let has = |i: usize| acc.count[i] > 0;
            let per = |f: &dyn Fn(usize) -> f64| -> Vec<Option<f64>> {
                (0..acc.count.len())
                    .map(|i| if has(i) { Some(f(i)) } else { None })
                    .collect()
            };
            // Exemplars of a series: those of its interval samples (and bucket), valued by the
            // sample for counts and rates.
            let with_exemplars = |labels: Vec<(String, Static)>,
                                  samples: Vec<Option<f64>>,
                                  bucket: Option<f64>,
                                  sample_value: bool| {
                let exemplars = acc
                    .exemplars
                    .iter()
                    .filter(|(_, _, b)| bucket.is_none() || *b == bucket)
                    .filter_map(|(e, i, _)| {
                        let v = samples.get(*i).copied().flatten()?;
                        let mut e = e.clone();
                        if sample_value {
                            e.value = v;
                        }
                        Some(e)
                    })
                    .collect();
                Series {
                    labels,
                    samples,
                    exemplars,
                }
            };
            match &self.agg.func {
                MetricsFunc::Rate => series.push(with_exemplars(
                    labels,
                    acc.count.iter().map(|&c| Some(c as f64 / step_s)).collect(),
                    None,
                    true,
                )),
                MetricsFunc::CountOverTime | MetricsFunc::Compare { .. } => {
                    series.push(with_exemplars(
                        labels,
                        acc.count.iter().map(|&c| Some(c as f64)).collect(),
                        None,
                        true,
                    ))
                }
                MetricsFunc::SumOverTime(_) => {
                    series.push(with_exemplars(labels, per(&|i| acc.sum[i]), None, false))
                }
                MetricsFunc::MinOverTime(_) => {
                    series.push(with_exemplars(labels, per(&|i| acc.min[i]), None, false))
                }
                MetricsFunc::MaxOverTime(_) => {
                    series.push(with_exemplars(labels, per(&|i| acc.max[i]), None, false))
                }
                MetricsFunc::AvgOverTime(_) => series.push(with_exemplars(
                    labels,
                    per(&|i| acc.sum[i] / acc.count[i] as f64),
                    None,
                    false,
                )),
                MetricsFunc::QuantileOverTime(_, qs) => {
                    let mut sorted = acc.values.clone();
                    for v in &mut sorted {
                        v.sort_by(f64::total_cmp);
                    }
                    for &q in qs {
                        let mut l = labels.clone();
                        l.push(("p".into(), Static::Float(q)));
                        let samples = sorted.iter().map(|v| quantile(v, q)).collect();
                        series.push(with_exemplars(l, samples, None, false));
                    }
                }
                MetricsFunc::HistogramOverTime(_) => {
                    for (b, counts) in &acc.buckets {
                        let mut l = labels.clone();
                        l.push(("__bucket".into(), Static::Float(*b)));
                        let samples = counts.iter().map(|&c| Some(c as f64)).collect();
                        series.push(with_exemplars(l, samples, Some(*b), true));
                    }
                }
            }
        }
        sort_series(&mut series);
        for stage in second_stage {
            apply_second_stage(&mut series, stage);
        }
        MetricsResult {
            start_ns: self.start_ns,
            step_ns: self.step_ns,
            series,
        }
    }
}

/// The label `compare()` puts first.
pub const META_TYPE: &str = "__meta_type";

/// `compare()`'s series: the top values per attribute of each side, and the totals.
fn compare_series(st: CompareState, top_n: usize, max_exemplars: usize, out: &mut Vec<Series>) {
    let meta = |t: &str| (META_TYPE.to_string(), Static::Str(t.into()));
    let samples = |v: &[f64]| v.iter().map(|&x| Some(x)).collect::<Vec<_>>();
    for (kind, data) in [("baseline", &st.baseline), ("selection", &st.selection)] {
        for (attr, values) in data {
            let mut ranked: Vec<&(Static, Vec<f64>)> = values.values().collect();
            // Largest totals first; ties by value for a stable answer.
            ranked.sort_by(|a, b| {
                let (x, y) = (a.1.iter().sum::<f64>(), b.1.iter().sum::<f64>());
                y.total_cmp(&x)
                    .then_with(|| a.0.to_string().cmp(&b.0.to_string()))
            });
            for (v, counts) in ranked.into_iter().take(top_n) {
                out.push(Series {
                    labels: vec![meta(kind), (attr.clone(), v.clone())],
                    samples: samples(counts),
                    exemplars: Vec::new(),
                });
            }
        }
    }
    for (kind, sel, data) in [
        ("baseline_total", false, &st.baseline_total),
        ("selection_total", true, &st.selection_total),
    ] {
        for (attr, counts) in data {
            let exemplars = st
                .exemplars
                .iter()
                .filter(|(s, names, _)| *s == sel && names.contains(attr))
                .map(|(_, _, e)| e.clone())
                .take(max_exemplars)
                .collect();
            out.push(Series {
                labels: vec![meta(kind), (attr.clone(), Static::Nil)],
                samples: samples(counts),
                exemplars,
            });
        }
    }
}

/// The groupable attribute values of a span for `compare()`, named as Tempo names them.
fn compare_attributes(ctx: &Ctx<'_>, idx: usize) -> Vec<(String, Static)> {
    let span = &ctx.trace.spans[idx];
    let mut out = Vec::new();
    let mut push_kvs = |prefix: &str, kvs: &[proto::otlp::tonic::common::v1::KeyValue]| {
        for kv in kvs {
            let v = kv.value.as_ref().and_then(|v| v.value.as_ref());
            use proto::otlp::tonic::common::v1::any_value::Value;
            let v = match v {
                Some(Value::StringValue(s)) => Static::Str(s.clone()),
                Some(Value::IntValue(i)) => Static::Int(*i),
                Some(Value::DoubleValue(d)) => Static::Float(*d),
                Some(Value::BoolValue(b)) => Static::Bool(*b),
                _ => continue,
            };
            let name = format!("{prefix}.{}", kv.key);
            if !out.iter().any(|(n, _)| *n == name) {
                out.push((name, v));
            }
        }
    };
    push_kvs("span", &span.attributes);
    push_kvs("resource", &span.origin.resource.attributes);
    for i in [
        Intrinsic::Name,
        Intrinsic::Status,
        Intrinsic::Kind,
        Intrinsic::StatusMessage,
        Intrinsic::RootName,
        Intrinsic::RootServiceName,
        Intrinsic::InstrumentationName,
        Intrinsic::InstrumentationVersion,
    ] {
        if let Some(v) = ctx.intrinsic(i, idx).into_iter().next() {
            let empty = matches!(&v, Static::Str(s) if s.is_empty());
            // Empty optional strings (no status message, no scope) are not values to compare.
            if !empty || matches!(i, Intrinsic::Name | Intrinsic::RootServiceName) {
                let name = match i {
                    Intrinsic::InstrumentationName | Intrinsic::InstrumentationVersion => {
                        i.scoped_name()
                    }
                    _ => i.key(),
                };
                out.push((name.to_string(), v));
            }
        }
    }
    out
}

/// Evaluates a metrics query over `traces` for `[start_ns, end_ns)` in steps of `step_ns`.
pub fn eval_metrics<'a>(
    q: &Query,
    traces: impl IntoIterator<Item = &'a Trace>,
    start_ns: u64,
    end_ns: u64,
    step_ns: u64,
) -> Result<MetricsResult, Error> {
    let mut m = MetricsEvaluator::new(q, start_ns, end_ns, step_ns)?;
    for t in traces {
        m.observe(t);
    }
    Ok(m.finish(&q.second_stage))
}

fn sort_series(series: &mut [Series]) {
    series.sort_by(|a, b| {
        let key = |s: &Series| {
            s.labels
                .iter()
                .map(|(k, v)| match v {
                    Static::Float(f) => (k.clone(), String::new(), *f),
                    v => (k.clone(), v.to_string(), 0.0),
                })
                .collect::<Vec<_>>()
        };
        key(a)
            .partial_cmp(&key(b))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
}

fn apply_second_stage(series: &mut Vec<Series>, stage: &SecondStage) {
    match stage {
        SecondStage::Filter(op, v) => {
            for s in series.iter_mut() {
                for x in s.samples.iter_mut() {
                    if let Some(y) = *x {
                        if !compare(&Static::Float(y), *op, &Static::Float(*v)) {
                            *x = None;
                        }
                    }
                }
            }
        }
        SecondStage::TopK(k) | SecondStage::BottomK(k) => {
            let top = matches!(stage, SecondStage::TopK(_));
            let n = series.first().map_or(0, |s| s.samples.len());
            for i in 0..n {
                let mut idx: Vec<usize> = (0..series.len())
                    .filter(|&j| series[j].samples[i].is_some_and(|v| !v.is_nan()))
                    .collect();
                idx.sort_by(|&a, &b| {
                    let (x, y) = (
                        series[a].samples[i].unwrap_or(0.0),
                        series[b].samples[i].unwrap_or(0.0),
                    );
                    if top {
                        y.total_cmp(&x)
                    } else {
                        x.total_cmp(&y)
                    }
                });
                for &j in idx.iter().skip(*k as usize) {
                    series[j].samples[i] = None;
                }
            }
        }
    }
    series.retain(|s| s.samples.iter().any(Option::is_some));
}

/// Quantile `q` of sorted values, interpolating linearly between order statistics.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = q * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let frac = rank - lo as f64;
    Some(sorted[lo] + (sorted[hi.min(sorted.len() - 1)] - sorted[lo]) * frac)
}

/// The power-of-two bucket (upper bound) of `v`. Durations (given in seconds) are bucketed in
/// nanoseconds (`2^k` ns) and reported back in seconds.
fn bucket_of(v: f64, is_dur: bool) -> f64 {
    if v <= 0.0 {
        return 0.0;
    }
    if is_dur {
        let ns = v * 1e9;
        2f64.powf(ns.log2().ceil()) / 1e9
    } else {
        2f64.powf(v.log2().ceil())
    }
}

/// A value as a metric sample (durations in seconds) and whether it was a duration.
fn metric_number(v: &Static) -> Option<(f64, bool)> {
    match v {
        Static::Duration(ns) => Some((*ns as f64 / 1e9, true)),
        Static::Int(i) => Some((*i as f64, false)),
        Static::Float(f) => Some((*f, false)),
        _ => None,
    }
}
