//! The synchronous evaluator: one expression at one timestamp, over data fetched up front.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use common::Labels;
use promql_parser::parser::{Expr, MatrixSelector, SubqueryExpr, VectorSelector};

use super::plan::{at_ms, dur_ms, offset_ms, selector_id, subquery_first};
use super::{EngineOptions, MatrixSeries, Value, VectorSample, DEFAULT_SUBQUERY_STEP_MS};
use crate::{is_stale_nan, Error, Histogram, HistogramSample, Sample, SeriesData};

/// The value of an expression at one evaluation timestamp.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    Scalar(f64),
    Str(String),
    /// Elements carry the timestamp of their source sample (selectors) or the evaluation time;
    /// only `timestamp()` looks at it.
    Vector(Vec<VectorSample>),
    Matrix(Vec<MatrixSeries>),
}

/// One cached inner step of a subquery, with each element's label hash computed once.
pub(crate) struct InnerStep {
    samples: Vec<VectorSample>,
    hashes: Vec<u64>,
}

/// Hasher for keys that already are well-mixed hashes.
#[derive(Default)]
struct IdentityHasher(u64);

impl std::hash::Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// The window a range-vector argument covered: `(start, end]`, both ms, and its length.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub start: i64,
    pub end: i64,
    pub range_ms: i64,
}

/// Evaluation state of one query.
pub(crate) struct Evaluator<'a> {
    data: HashMap<usize, Arc<Vec<SeriesData>>>,
    /// The label sets of `data`, shared once per query so that selecting a series at a step
    /// clones a pointer rather than every label string.
    labels: SharedLabels,
    /// Label sets without `__name__`, by the address of the set they were derived from (kept
    /// alive alongside): value-changing functions drop the name at every step.
    nameless: PtrMap<Arc<Labels>>,
    pub opts: &'a EngineOptions,
    /// Query start/end (for `@ start()`/`end()` and `start()`/`end()`), ms.
    pub start: i64,
    pub end: i64,
    /// Query step, ms (0 for instant queries).
    pub step: i64,
    deadline: Instant,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
    /// Samples loaded while evaluating the current top-level step.
    loaded: usize,
    /// Samples already kept in the output of a range query.
    kept: usize,
    /// Whether the sort-in-range-query warning was already issued.
    pub sort_warned: bool,
    /// Inner results of subqueries by node and timestamp: the inner expression is a pure
    /// function of its evaluation time, and consecutive outer steps share most inner steps.
    subquery_cache: HashMap<usize, BTreeMap<i64, Arc<InnerStep>>>,
    /// The steps of the range query this evaluator serves (`start`, `end` inclusive, `step`):
    /// the grid the sliding evaluator precomputes range functions on.
    pub(crate) grid: Option<(i64, i64, i64)>,
    /// Whether range functions over selectors may be precomputed series-at-a-time.
    pub(crate) sliding_enabled: bool,
    /// Precomputed range-function results by call node (`None`: the call does not qualify).
    pub(crate) sliding: HashMap<usize, Option<Arc<super::sliding::Table>>>,
    /// How many subqueries the current evaluation is nested in (their steps are off the grid).
    pub(crate) sub_depth: usize,
    /// Grouping of label sets per aggregation node, remembered across steps.
    pub(crate) agg_groups: HashMap<usize, super::aggregate::GroupCache>,
    /// Classic-bucket grouping per `histogram_quantile` call node, remembered across steps.
    pub(crate) bucket_groups: HashMap<usize, super::histogram::BucketCache>,
    /// Running maximum of `loaded + kept`: lets a caller that split the steps between threads
    /// replay the `max_samples` check as a sequential evaluation would have made it.
    pub(crate) need: usize,
    /// Set by the sliding evaluator when the vector it just returned has distinct label sets
    /// (taken, and reset, by the call that receives it).
    pub(crate) unique_known: bool,
}

/// Label sets of the fetched series, by selector id, shared by all evaluators of a query.
pub(crate) type SharedLabels = Arc<HashMap<usize, Arc<Vec<Arc<Labels>>>>>;

/// Wraps each fetched series' label set in an `Arc`, once per query.
pub(crate) fn share_labels(data: &HashMap<usize, Arc<Vec<SeriesData>>>) -> SharedLabels {
    // Selectors that share their data (identical matchers) share their label sets too.
    let mut by_data: HashMap<usize, Arc<Vec<Arc<Labels>>>> = HashMap::new();
    let mut out = HashMap::new();
    for (id, v) in data {
        let l = by_data
            .entry(Arc::as_ptr(v) as usize)
            .or_insert_with(|| Arc::new(v.iter().map(|s| Arc::new(s.labels.clone())).collect()))
            .clone();
        out.insert(*id, l);
    }
    Arc::new(out)
}

pub(crate) const TOO_MANY_SAMPLES: &str =
    "query processing would load too many samples into memory in query execution";

impl<'a> Evaluator<'a> {
    pub fn new(
        data: HashMap<usize, Arc<Vec<SeriesData>>>,
        labels: SharedLabels,
        opts: &'a EngineOptions,
        start: i64,
        end: i64,
        step: i64,
        deadline: Instant,
    ) -> Self {
        Self {
            data,
            labels,
            nameless: PtrMap::default(),
            opts,
            start,
            end,
            step,
            deadline,
            warnings: Vec::new(),
            infos: Vec::new(),
            loaded: 0,
            kept: 0,
            sort_warned: false,
            subquery_cache: HashMap::new(),
            grid: None,
            sliding_enabled: true,
            sliding: HashMap::new(),
            sub_depth: 0,
            agg_groups: HashMap::new(),
            bucket_groups: HashMap::new(),
            need: 0,
            unique_known: false,
        }
    }

    /// Records a warning annotation once.
    pub fn warn(&mut self, w: String) {
        if !self.warnings.contains(&w) {
            self.warnings.push(w);
        }
    }

    /// Records an info annotation once.
    pub fn info(&mut self, w: String) {
        if !self.infos.contains(&w) {
            self.infos.push(w);
        }
    }

    pub(crate) fn check_deadline(&self) -> Result<(), Error> {
        if Instant::now() > self.deadline {
            return Err(Error::Timeout(
                "in expression evaluation; try a shorter range or a larger step".into(),
            ));
        }
        Ok(())
    }

    /// Accounts `n` more samples in memory.
    pub fn load(&mut self, n: usize) -> Result<(), Error> {
        self.loaded = self.loaded.saturating_add(n);
        self.need = self.need.max(self.loaded.saturating_add(self.kept));
        if self.loaded.saturating_add(self.kept) > self.opts.max_samples {
            return Err(Error::Execution(TOO_MANY_SAMPLES.into()));
        }
        Ok(())
    }

    /// Evaluates an instant query.
    pub fn eval_instant(&mut self, expr: &Expr, t: i64) -> Result<Value, Error> {
        self.check_deadline()?;
        Ok(match self.eval(expr, t)? {
            Val::Scalar(v) => Value::Scalar { t, v },
            Val::Str(v) => Value::String { t, v },
            Val::Vector(mut v) => {
                for s in &mut v {
                    s.t = t;
                }
                Value::Vector(v)
            }
            Val::Matrix(mut m) => {
                m.sort_by(|a, b| a.labels.cmp(&b.labels));
                Value::Matrix(m)
            }
        })
    }

    /// Evaluates a range query: every step, folded into series sorted by labels.
    pub fn eval_range(
        &mut self,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Value, Error> {
        self.grid = Some((start, end, step));
        let mut out = SeriesFolder::default();
        let mut t = start;
        while t <= end {
            self.check_deadline()?;
            self.loaded = 0;
            match self.eval(expr, t)? {
                Val::Scalar(v) => {
                    out.push(Arc::new(Labels::default()), t, v, None);
                    self.kept += 1;
                }
                Val::Vector(v) => {
                    self.kept += v.len();
                    for s in v {
                        out.push(s.labels, t, s.v, s.h);
                    }
                }
                Val::Str(_) | Val::Matrix(_) => {
                    return Err(Error::BadData(
                        "invalid expression type for range query, must be Scalar or instant Vector"
                            .into(),
                    ))
                }
            }
            self.need = self.need.max(self.kept);
            if self.kept > self.opts.max_samples {
                return Err(Error::Execution(TOO_MANY_SAMPLES.into()));
            }
            t = match t.checked_add(step) {
                Some(n) => n,
                None => break,
            };
        }
        Ok(Value::Matrix(out.finish()))
    }

    /// Samples kept in the output so far.
    pub(crate) fn kept(&self) -> usize {
        self.kept
    }

    /// Evaluates `expr` at `t`.
    pub fn eval(&mut self, expr: &Expr, t: i64) -> Result<Val, Error> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Val::Scalar(v) => Ok(Val::Scalar(-v)),
                Val::Vector(mut v) => {
                    for s in &mut v {
                        self.drop_name(&mut s.labels);
                        s.v = -s.v;
                        if let Some(h) = &s.h {
                            s.h = Some(Arc::new(super::histogram::scale(h, -1.0)));
                        }
                    }
                    check_unique(&v)?;
                    Ok(Val::Vector(v))
                }
                _ => Err(Error::Execution(
                    "unary minus needs a scalar or an instant vector".into(),
                )),
            },
            Expr::VectorSelector(vs) => self.select_instant(vs, t).map(Val::Vector),
            Expr::MatrixSelector(ms) => self.select_range(ms, t).map(Val::Matrix),
            Expr::Subquery(sq) => self.subquery(sq, t).map(Val::Matrix),
            Expr::Call(c) => {
                let v = super::functions::call(self, c, t)?;
                // The sliding evaluator knows its label sets are distinct at every step.
                let known = std::mem::take(&mut self.unique_known);
                if let Val::Vector(v) = &v {
                    if !known {
                        check_unique(v)?;
                    }
                }
                Ok(v)
            }
            Expr::Aggregate(a) => super::aggregate::eval(self, a, t),
            Expr::Binary(b) => {
                let v = super::binary::eval(self, b, t)?;
                if let Val::Vector(v) = &v {
                    check_unique(v)?;
                }
                Ok(v)
            }
            Expr::Extension(_) => Err(Error::Execution(
                "extension expressions are not supported".into(),
            )),
        }
    }

    /// Evaluates `expr`, which must yield an instant vector.
    pub fn eval_vector(&mut self, expr: &Expr, t: i64) -> Result<Vec<VectorSample>, Error> {
        match self.eval(expr, t)? {
            Val::Vector(v) => Ok(v),
            _ => Err(Error::Execution("expected an instant vector".into())),
        }
    }

    /// Evaluates `expr`, which must yield a scalar.
    pub fn eval_scalar(&mut self, expr: &Expr, t: i64) -> Result<f64, Error> {
        match self.eval(expr, t)? {
            Val::Scalar(v) => Ok(v),
            _ => Err(Error::Execution("expected a scalar".into())),
        }
    }

    /// Evaluates `expr`, which must yield a string.
    pub fn eval_string(&mut self, expr: &Expr, t: i64) -> Result<String, Error> {
        match self.eval(expr, t)? {
            Val::Str(v) => Ok(v),
            _ => Err(Error::Execution("expected a string".into())),
        }
    }

    /// Evaluates a range-vector argument and reports the window it covered.
    pub fn eval_matrix(
        &mut self,
        expr: &Expr,
        t: i64,
    ) -> Result<(Vec<MatrixSeries>, Window), Error> {
        let w = self.window_of(expr, t)?;
        match self.eval(expr, t)? {
            Val::Matrix(m) => Ok((m, w)),
            _ => Err(Error::Execution("expected a range vector".into())),
        }
    }

    fn window_of(&self, expr: &Expr, t: i64) -> Result<Window, Error> {
        match expr {
            Expr::Paren(p) => self.window_of(&p.expr, t),
            Expr::MatrixSelector(ms) => {
                let eff =
                    at_ms(&ms.vs.at, self.start, self.end).unwrap_or(t) - offset_ms(&ms.vs.offset);
                let r = dur_ms(&ms.range);
                Ok(Window {
                    start: eff - r,
                    end: eff,
                    range_ms: r,
                })
            }
            Expr::Subquery(sq) => {
                let eff = at_ms(&sq.at, self.start, self.end).unwrap_or(t) - offset_ms(&sq.offset);
                let r = dur_ms(&sq.range);
                Ok(Window {
                    start: eff - r,
                    end: eff,
                    range_ms: r,
                })
            }
            _ => Err(Error::Execution("expected a range vector".into())),
        }
    }

    fn series_of(&self, vs: &VectorSelector) -> (&[SeriesData], &[Arc<Labels>]) {
        let id = selector_id(vs);
        (
            self.data.get(&id).map(|v| v.as_slice()).unwrap_or(&[]),
            self.labels.get(&id).map(|v| v.as_slice()).unwrap_or(&[]),
        )
    }

    /// The fetched series of a selector and their shared label sets (owned handles).
    pub(crate) fn series_arc(
        &self,
        vs: &VectorSelector,
    ) -> (Arc<Vec<SeriesData>>, Arc<Vec<Arc<Labels>>>) {
        let id = selector_id(vs);
        (
            self.data.get(&id).cloned().unwrap_or_default(),
            self.labels.get(&id).cloned().unwrap_or_default(),
        )
    }

    /// Removes `__name__` from `l`, sharing the result across steps.
    pub fn drop_name(&mut self, l: &mut Arc<Labels>) {
        if l.get(common::labels::METRIC_NAME).is_none() {
            return;
        }
        let key = Arc::as_ptr(l) as usize;
        if let Some((src, dropped)) = self.nameless.get(&key) {
            if Arc::ptr_eq(src, l) {
                *l = dropped.clone();
                return;
            }
        }
        let mut d = (**l).clone();
        d.remove(common::labels::METRIC_NAME);
        let d = Arc::new(d);
        // Only shared sets are worth remembering (a unique one dies with this element).
        if Arc::strong_count(l) > 1 {
            self.nameless.insert(key, (l.clone(), d.clone()));
        }
        *l = d;
    }

    /// The latest non-stale sample of every series in `(t-lookback, t]` (after `@`/offset).
    pub fn select_instant(
        &mut self,
        vs: &VectorSelector,
        t: i64,
    ) -> Result<Vec<VectorSample>, Error> {
        let eff = at_ms(&vs.at, self.start, self.end).unwrap_or(t) - offset_ms(&vs.offset);
        let lo = eff - self.opts.lookback_delta_ms;
        let mut out = Vec::new();
        let (series, labels) = self.series_of(vs);
        for (i, (s, l)) in series.iter().zip(labels).enumerate() {
            if i % 4096 == 4095 {
                self.check_deadline()?;
            }
            let fi = s.samples.partition_point(|p| p.t <= eff);
            let f = (fi > 0).then(|| s.samples[fi - 1]).filter(|p| p.t > lo);
            let hi = s.histograms.partition_point(|p| p.t <= eff);
            let h = (hi > 0).then(|| &s.histograms[hi - 1]).filter(|p| p.t > lo);
            let pick = match (f, h) {
                (None, None) => None,
                (Some(f), None) => Some((f.t, f.v, None)),
                (None, Some(h)) => Some((h.t, 0.0, Some(h.h.clone()))),
                (Some(f), Some(h)) if f.t >= h.t => Some((f.t, f.v, None)),
                (Some(_), Some(h)) => Some((h.t, 0.0, Some(h.h.clone()))),
            };
            let Some((ts, v, h)) = pick else { continue };
            if h.as_ref().map_or(is_stale_nan(v), |h| is_stale_nan(h.sum)) {
                continue;
            }
            out.push(VectorSample {
                labels: l.clone(),
                t: ts,
                v,
                h,
            });
        }
        self.load(out.len())?;
        Ok(out)
    }

    /// Every non-stale sample of every series in `(t-range, t]` (after `@`/offset).
    pub fn select_range(
        &mut self,
        ms: &MatrixSelector,
        t: i64,
    ) -> Result<Vec<MatrixSeries>, Error> {
        let eff = at_ms(&ms.vs.at, self.start, self.end).unwrap_or(t) - offset_ms(&ms.vs.offset);
        let lo = eff - dur_ms(&ms.range);
        let mut out = Vec::new();
        let mut n = 0;
        let (series, labels) = self.series_of(&ms.vs);
        for (i, (s, l)) in series.iter().zip(labels).enumerate() {
            if i % 4096 == 4095 {
                self.check_deadline()?;
            }
            let a = s.samples.partition_point(|p| p.t <= lo);
            let b = s.samples.partition_point(|p| p.t <= eff);
            // Sized up front: this runs for every series at every step of a range query.
            let window = &s.samples[a..b.max(a)];
            let mut samples: Vec<Sample> = Vec::with_capacity(window.len());
            samples.extend(window.iter().filter(|p| !is_stale_nan(p.v)).copied());
            let a = s.histograms.partition_point(|p| p.t <= lo);
            let b = s.histograms.partition_point(|p| p.t <= eff);
            let histograms: Vec<HistogramSample> = s.histograms[a..b.max(a)]
                .iter()
                .filter(|p| !is_stale_nan(p.h.sum))
                .cloned()
                .collect();
            if samples.is_empty() && histograms.is_empty() {
                continue;
            }
            n += samples.len() + histograms.len();
            out.push(MatrixSeries {
                labels: l.clone(),
                samples,
                histograms,
            });
        }
        self.load(n)?;
        Ok(out)
    }

    /// Evaluates the inner expression of a subquery at every aligned step inside its window.
    pub fn subquery(&mut self, sq: &SubqueryExpr, t: i64) -> Result<Vec<MatrixSeries>, Error> {
        let eff = at_ms(&sq.at, self.start, self.end).unwrap_or(t) - offset_ms(&sq.offset);
        let range = dur_ms(&sq.range);
        let step = sq
            .step
            .as_ref()
            .map(dur_ms)
            .filter(|s| *s > 0)
            .unwrap_or(DEFAULT_SUBQUERY_STEP_MS);
        let first = subquery_first(eff - range, step);
        if usize::try_from((eff - first) / step).unwrap_or(usize::MAX) > self.opts.max_samples {
            return Err(Error::Execution(TOO_MANY_SAMPLES.into()));
        }
        let id = sq as *const SubqueryExpr as usize;
        let mut cache = self.subquery_cache.remove(&id).unwrap_or_default();
        // Outer steps move forward, so anything before this window is no longer needed.
        cache = cache.split_off(&first);
        let mut steps: Vec<(i64, Arc<InnerStep>)> = Vec::new();
        let mut ts = first;
        while ts <= eff {
            self.check_deadline()?;
            let v = match cache.get(&ts) {
                Some(v) => v.clone(),
                None => {
                    // Inner steps are off the query's grid: no sliding precomputation there.
                    self.sub_depth += 1;
                    let samples = self.eval_vector(&sq.expr, ts);
                    self.sub_depth -= 1;
                    let samples = samples?;
                    let hashes = samples.iter().map(|s| s.labels.stable_hash()).collect();
                    let v = Arc::new(InnerStep { samples, hashes });
                    cache.insert(ts, v.clone());
                    v
                }
            };
            steps.push((ts, v));
            ts += step;
        }
        // Group by the precomputed label hashes (checking equality on collisions) so that each
        // output series clones its labels once.
        let mut index: HashMap<u64, Vec<usize>, std::hash::BuildHasherDefault<IdentityHasher>> =
            HashMap::default();
        let mut series: Vec<MatrixSeries> = Vec::new();
        let mut n = 0;
        for (ts, step) in &steps {
            for (s, h) in step.samples.iter().zip(&step.hashes) {
                let cands = index.entry(*h).or_default();
                let i = match cands.iter().find(|&&i| series[i].labels == s.labels) {
                    Some(&i) => i,
                    None => {
                        series.push(MatrixSeries {
                            labels: s.labels.clone(),
                            ..Default::default()
                        });
                        cands.push(series.len() - 1);
                        series.len() - 1
                    }
                };
                match &s.h {
                    Some(h) => series[i].histograms.push(HistogramSample {
                        t: *ts,
                        h: h.clone(),
                    }),
                    None => series[i].samples.push(Sample { t: *ts, v: s.v }),
                }
                n += 1;
            }
        }
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        let out = series;
        self.subquery_cache.insert(id, cache);
        self.load(n)?;
        Ok(out)
    }
}

/// Folds the vectors of successive steps into series. A label set seen before is found by the
/// address of its (shared) `Arc` first, by value otherwise; series are sorted by labels at the end.
#[derive(Default)]
pub(crate) struct SeriesFolder {
    series: Vec<MatrixSeries>,
    /// Address of a shared label set → series index; the `Arc` is kept so the address stays taken.
    by_ptr: PtrMap<usize>,
    by_value: HashMap<Arc<Labels>, usize>,
}

impl SeriesFolder {
    /// Appends the point `(t, v | h)` to the series `labels`.
    pub(crate) fn push(&mut self, labels: Arc<Labels>, t: i64, v: f64, h: Option<Arc<Histogram>>) {
        let key = Arc::as_ptr(&labels) as usize;
        let i = match self.by_ptr.get(&key) {
            Some((_, i)) => *i,
            None => {
                let (i, remember) = match self.by_value.get(&labels) {
                    // Only shared sets recur by address; a unique one dies with this element.
                    Some(&i) => (i, Arc::strong_count(&labels) > 1),
                    None => {
                        self.series.push(MatrixSeries {
                            labels: labels.clone(),
                            ..Default::default()
                        });
                        self.by_value.insert(labels.clone(), self.series.len() - 1);
                        (self.series.len() - 1, true)
                    }
                };
                if remember {
                    self.by_ptr.insert(key, (labels, i));
                }
                i
            }
        };
        let e = &mut self.series[i];
        match h {
            Some(h) => e.histograms.push(HistogramSample { t, h }),
            None => e.samples.push(Sample { t, v }),
        }
    }

    /// The series, sorted by labels.
    pub(crate) fn finish(mut self) -> Vec<MatrixSeries> {
        self.series.sort_by(|a, b| a.labels.cmp(&b.labels));
        self.series
    }
}

/// Values keyed by the address of a shared label set, holding that set so the address stays
/// taken while the entry lives.
pub(crate) type PtrMap<V> =
    HashMap<usize, (Arc<Labels>, V), std::hash::BuildHasherDefault<PtrHasher>>;

/// Hasher for pointer keys: spreads the (aligned) address with one multiplication.
#[derive(Default)]
pub(crate) struct PtrHasher(u64);

impl std::hash::Hasher for PtrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_usize(&mut self, v: usize) {
        self.0 = (v as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
}

/// Fails when two elements share a label set (e.g. after `__name__` was dropped).
pub(crate) fn check_unique(v: &[VectorSample]) -> Result<(), Error> {
    if v.len() < 2 {
        return Ok(());
    }
    // Cheap first pass on 64-bit hashes; the exact check only runs when two hashes collide.
    let mut hashes: Vec<u64> = v.iter().map(|s| s.labels.stable_hash()).collect();
    hashes.sort_unstable();
    if hashes.windows(2).all(|w| w[0] != w[1]) {
        return Ok(());
    }
    let mut seen = HashSet::with_capacity(v.len());
    for s in v {
        if !seen.insert(&s.labels) {
            return Err(Error::Execution(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
    }
    Ok(())
}

/// Kahan-Babuška compensated addition: returns the new sum and compensation.
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Drops the metric name from a label set (copying a shared set; see
/// [`Evaluator::drop_name`] for the cached variant of per-step hot paths).
pub(crate) fn drop_name(l: &mut Arc<Labels>) {
    if l.get(common::labels::METRIC_NAME).is_some() {
        Arc::make_mut(l).remove(common::labels::METRIC_NAME);
    }
}
