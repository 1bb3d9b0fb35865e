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

use std::collections::HashMap;

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
    intervals: usize,
    groups: Groups,
}

/// A hashable form of a label value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct StaticKey(String);

impl<'q> MetricsEvaluator<'q> {
    /// Prepares `q` (which must end in a metrics function) for `[start_ns, end_ns)` in steps
    /// of `step_ns`.
    pub fn new(q: &'q Query, start_ns: u64, end_ns: u64, step_ns: u64) -> Result<Self, Error> {
        let Some(agg) = &q.metrics else {
            return Err(Error::BadRequest(
                "not a metrics query: it must end with a metrics function such as rate()".into(),
            ));
        };
        if let MetricsFunc::Compare { .. } = agg.func {
            return Err(Error::BadRequest(
                "compare() is not supported by this evaluator".into(),
            ));
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
            intervals: n as usize,
            groups: HashMap::new(),
        })
    }

    /// Adds the matching spans of one trace.
    pub fn observe(&mut self, trace: &Trace) {
        let ctx = Ctx::new(trace);
        let sets = self.eval.eval_with(&ctx);
        let mut seen = vec![false; trace.spans.len()];
        for ss in &sets {
            for m in &ss.spans {
                if std::mem::replace(&mut seen[m.index], true) {
                    continue;
                }
                self.observe_span(&ctx, m.index);
            }
        }
    }

    fn observe_span(&mut self, ctx: &Ctx<'_>, idx: usize) {
        let span = &ctx.trace.spans[idx];
        if span.start_ns < self.start_ns {
            return;
        }
        let i = ((span.start_ns - self.start_ns) / self.step_ns) as usize;
        if i >= self.intervals {
            return;
        }
        let mut labels = Vec::with_capacity(self.agg.by.len());
        for e in &self.agg.by {
            if let Some(v) = self.eval.values(ctx, e, idx).into_iter().next() {
                labels.push((e.to_string(), v));
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
                    None => return,
                }
            }
        };
        let key: Vec<(String, StaticKey)> = labels
            .iter()
            .map(|(k, v)| (k.clone(), StaticKey(format!("{v:?}"))))
            .collect();
        let n = self.intervals;
        if !self.groups.contains_key(&key) && self.groups.len() >= MAX_SERIES {
            return;
        }
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
                },
            )
        });
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
    }

    /// The series, with the second stage applied.
    pub fn finish(self, second_stage: &[SecondStage]) -> MetricsResult {
        let step_s = self.step_ns as f64 / 1e9;
        let mut series = Vec::new();
        for (_, (labels, acc)) in self.groups {
            let has = |i: usize| acc.count[i] > 0;
            let per = |f: &dyn Fn(usize) -> f64| -> Vec<Option<f64>> {
                (0..acc.count.len())
                    .map(|i| if has(i) { Some(f(i)) } else { None })
                    .collect()
            };
            match &self.agg.func {
                MetricsFunc::Rate => series.push(Series {
                    labels,
                    samples: acc.count.iter().map(|&c| Some(c as f64 / step_s)).collect(),
                }),
                MetricsFunc::CountOverTime | MetricsFunc::Compare { .. } => series.push(Series {
                    labels,
                    samples: acc.count.iter().map(|&c| Some(c as f64)).collect(),
                }),
                MetricsFunc::SumOverTime(_) => series.push(Series {
                    labels,
                    samples: per(&|i| acc.sum[i]),
                }),
                MetricsFunc::MinOverTime(_) => series.push(Series {
                    labels,
                    samples: per(&|i| acc.min[i]),
                }),
                MetricsFunc::MaxOverTime(_) => series.push(Series {
                    labels,
                    samples: per(&|i| acc.max[i]),
                }),
                MetricsFunc::AvgOverTime(_) => series.push(Series {
                    labels,
                    samples: per(&|i| acc.sum[i] / acc.count[i] as f64),
                }),
                MetricsFunc::QuantileOverTime(_, qs) => {
                    let mut sorted = acc.values.clone();
                    for v in &mut sorted {
                        v.sort_by(f64::total_cmp);
                    }
                    for &q in qs {
                        let mut l = labels.clone();
                        l.push(("p".into(), Static::Float(q)));
                        series.push(Series {
                            labels: l,
                            samples: sorted.iter().map(|v| quantile(v, q)).collect(),
                        });
                    }
                }
                MetricsFunc::HistogramOverTime(_) => {
                    for (b, counts) in &acc.buckets {
                        let mut l = labels.clone();
                        l.push(("__bucket".into(), Static::Float(*b)));
                        series.push(Series {
                            labels: l,
                            samples: counts.iter().map(|&c| Some(c as f64)).collect(),
                        });
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
