//! The LogQL evaluator: log queries (streams, limited and ordered by direction) and metric queries
//! (range aggregations over extracted samples, then vector aggregations, binary operations and
//! functions, evaluated step by step with PromQL's semantics).
//!
//! Data comes only through [`LogSource`], so the engine is the same for the head, blocks and
//! federated tenants.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::ops::ControlFlow;
use std::sync::Arc;

use common::{Label, Labels, MatchOp, Matcher, TenantSet};

use super::ast::{
    BinOp, Cardinality, Expr, Grouping, LogExpr, LogRange, MetricExpr, RangeOp, UnwrapConv,
    VectorMatching, VectorOp,
};
use super::pipeline::{EntryLabels, Origin, Pipeline, ERROR_DETAILS_LABEL, ERROR_LABEL};
use super::units;
use crate::model::{LogSource, ScanRequest, ScanStats, StreamInfo};
use crate::Error;

/// Label that tells federated results apart.
pub const TENANT_LABEL: &str = "__tenant_id__";

/// Order of log results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Oldest first.
    Forward,
    /// Newest first (Loki's default).
    Backward,
}

/// What to evaluate and over which range.
#[derive(Debug, Clone)]
pub struct QueryParams {
    /// Tenants to read.
    pub tenants: TenantSet,
    /// Inclusive start, unix ns (= `end` for instant queries).
    pub start: i64,
    /// End, unix ns: exclusive for log queries, the last step for metric queries.
    pub end: i64,
    /// Step between evaluations of metric queries, ns (> 0).
    pub step: i64,
    /// Most entries returned by a log query.
    pub limit: usize,
    /// Order of log results.
    pub direction: Direction,
    /// Log queries: at most one entry per stream per interval, ns.
    pub interval: Option<i64>,
    /// Keep stream labels, structured metadata and parsed labels apart (`categorize-labels`).
    pub categorize: bool,
    /// Metric queries: most series a result may have (0 = unlimited).
    pub max_series: usize,
}

/// One returned log entry.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// Unix ns.
    pub ts: i64,
    /// The (possibly formatted) line.
    pub line: String,
    /// Structured metadata (only with `categorize`).
    pub metadata: Vec<(String, String)>,
    /// Parsed labels (only with `categorize`).
    pub parsed: Vec<(String, String)>,
}

/// One result stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamResult {
    /// Labels (all labels folded in unless `categorize`).
    pub labels: Labels,
    /// Entries in the requested direction.
    pub entries: Vec<LogEntry>,
}

/// One metric series over all steps that have a value.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesResult {
    /// Labels.
    pub labels: Labels,
    /// `(unix ns, value)`.
    pub points: Vec<(i64, f64)>,
}

/// A query result.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryResult {
    /// Log query.
    Streams(Vec<StreamResult>),
    /// Metric range query.
    Matrix(Vec<SeriesResult>),
    /// Metric instant query: samples at `ts`.
    Vector(i64, Vec<(Labels, f64)>),
    /// Instant query of a scalar expression.
    Scalar(i64, f64),
}

/// Execution counters for the `stats` block.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryStats {
    /// What the store decoded.
    pub scan: ScanStats,
    /// Entries that passed the pipeline.
    pub post_filter_lines: u64,
}

/// Whether a query is a log query (streams) or a metric query.
pub fn is_log_query(e: &Expr) -> bool {
    matches!(e, Expr::Log(_))
}

/// Splits `__tenant_id__` matchers off a selector and applies them to the tenant set: the
/// tenants left to read and the matchers for the store; `None` when no tenant matches.
pub(crate) fn split_tenants(
    tenants: &TenantSet,
    matchers: &[Matcher],
) -> Option<(TenantSet, Vec<Matcher>)> {
    let (tenant_m, rest): (Vec<Matcher>, Vec<Matcher>) = matchers
        .iter()
        .cloned()
        .partition(|m| m.name == TENANT_LABEL);
    let kept: Vec<_> = tenants
        .tenants()
        .iter()
        .filter(|t| tenant_m.iter().all(|m| m.matches(t.as_str())))
        .cloned()
        .collect();
    (!kept.is_empty()).then(|| (TenantSet::from_ids(kept), rest))
}

/// Stream labels as the query sees them (with `__tenant_id__` when federated).
pub(crate) fn stream_labels(info: &StreamInfo, federated: bool) -> Labels {
    let mut l = (*info.labels).clone();
    if federated {
        l.set(TENANT_LABEL, info.tenant.as_str());
    }
    l
}

/// Evaluates a parsed query.
pub async fn evaluate(
    source: &dyn LogSource,
    expr: &Expr,
    p: &QueryParams,
    instant: bool,
) -> Result<(QueryResult, QueryStats), Error> {
    let mut stats = QueryStats::default();
    match expr {
        Expr::Log(l) => {
            let r = eval_log(source, l, p, &mut stats).await?;
            Ok((QueryResult::Streams(r), stats))
        }
        Expr::Metric(m) => {
            let steps = steps(p.start, p.end, p.step, instant);
            if m.is_scalar() && instant {
                let v = scalar_value(m).unwrap_or(f64::NAN);
                return Ok((QueryResult::Scalar(p.end, v), stats));
            }
            let mut ev = Evaluator {
                source,
                p,
                steps: &steps,
                stats: &mut stats,
            };
            let out = ev.eval(m).await?;
            let series_cap = p.max_series;
            if instant {
                let ts = steps[0];
                let mut v: Vec<(Labels, f64)> = out
                    .into_iter()
                    .next()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(l, v)| ((*l).clone(), v))
                    .collect();
                if !keeps_order(m) {
                    v.sort_by(|a, b| a.0.cmp(&b.0));
                }
                if series_cap > 0 && v.len() > series_cap {
                    return Err(max_series(series_cap));
                }
                Ok((QueryResult::Vector(ts, v), stats))
            } else {
                let mut by: HashMap<Arc<Labels>, usize> = HashMap::new();
                let mut series: Vec<SeriesResult> = Vec::new();
                for (i, step) in out.into_iter().enumerate() {
                    for (l, v) in step {
                        let idx = *by.entry(l.clone()).or_insert_with(|| {
                            series.push(SeriesResult {
                                labels: (*l).clone(),
                                points: Vec::new(),
                            });
                            series.len() - 1
                        });
                        series[idx].points.push((steps[i], v));
                    }
                    if series_cap > 0 && series.len() > series_cap {
                        return Err(max_series(series_cap));
                    }
                }
                series.sort_by(|a, b| a.labels.cmp(&b.labels));
                Ok((QueryResult::Matrix(series), stats))
            }
        }
    }
}

fn max_series(n: usize) -> Error {
    Error::QueryLimit(format!(
        "maximum of series ({n}) reached for a single query; consider reducing the query cardinality (max_query_series)"
    ))
}

fn keeps_order(m: &MetricExpr) -> bool {
    matches!(
        m,
        MetricExpr::Vector {
            op: VectorOp::Sort | VectorOp::SortDesc | VectorOp::Topk | VectorOp::Bottomk,
            ..
        }
    )
}

fn steps(start: i64, end: i64, step: i64, instant: bool) -> Vec<i64> {
    if instant || step <= 0 {
        return vec![end];
    }
    let mut v = Vec::new();
    let mut t = start;
    while t <= end {
        v.push(t);
        t += step;
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Log queries.

struct Held {
    key: (i64, u64),
    stream: usize,
    entry: LogEntry,
}

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Self) -> Ordering {
        self.key.cmp(&o.key)
    }
}

/// Keeps the `limit` best entries: newest (backward) or oldest (forward).
enum TopN {
    Newest(BinaryHeap<Reverse<Held>>),
    Oldest(BinaryHeap<Held>),
}

impl TopN {
    fn len(&self) -> usize {
        match self {
            TopN::Newest(h) => h.len(),
            TopN::Oldest(h) => h.len(),
        }
    }

    /// Whether an entry at `ts` could still enter a full set.
    fn could_enter(&self, ts: i64, limit: usize) -> bool {
        if self.len() < limit {
            return true;
        }
        match self {
            TopN::Newest(h) => h.peek().is_some_and(|w| ts > w.0.key.0),
            TopN::Oldest(h) => h.peek().is_some_and(|w| ts < w.key.0),
        }
    }

    fn push(&mut self, item: Held, limit: usize) {
        match self {
            TopN::Newest(h) => {
                h.push(Reverse(item));
                if h.len() > limit {
                    h.pop();
                }
            }
            TopN::Oldest(h) => {
                h.push(item);
                if h.len() > limit {
                    h.pop();
                }
            }
        }
    }

    fn into_vec(self) -> Vec<Held> {
        match self {
            TopN::Newest(h) => h.into_iter().map(|r| r.0).collect(),
            TopN::Oldest(h) => h.into_vec(),
        }
    }
}

async fn eval_log(
    source: &dyn LogSource,
    l: &LogExpr,
    p: &QueryParams,
    stats: &mut QueryStats,
) -> Result<Vec<StreamResult>, Error> {
    let pipeline = Pipeline::new(&l.stages)?;
    let Some((tenants, matchers)) = split_tenants(&p.tenants, &l.matchers) else {
        return Ok(Vec::new());
    };
    let federated = p.tenants.is_federated();
    let req = ScanRequest {
        tenants,
        matchers,
        start: p.start,
        end: p.end,
        required: l
            .required_substrings()
            .into_iter()
            .map(|s| s.as_bytes().to_vec())
            .collect(),
    };
    let limit = p.limit.max(1);
    let mut top = match p.direction {
        Direction::Backward => TopN::Newest(BinaryHeap::new()),
        Direction::Forward => TopN::Oldest(BinaryHeap::new()),
    };
    let mut keys: HashMap<Labels, usize> = HashMap::new();
    let mut key_list: Vec<Labels> = Vec::new();
    let mut seq = 0u64;
    let mut passed = 0u64;
    let scan = source
        .scan(&req, &mut |info, batch| {
            let base = stream_labels(info, federated);
            let mut cache = BatchSlots::default();
            let info_view = StreamInfo {
                tenant: info.tenant.clone(),
                labels: Arc::new(base.clone()),
                fingerprint: info.fingerprint,
            };
            pipeline.candidates(batch, &mut |i| {
                let ts = batch.ts[i];
                if !top.could_enter(ts, limit) {
                    return;
                }
                let meta = batch.metadata(i);
                let Some(out) = pipeline.process(ts, batch.line(i), &info_view, meta) else {
                    return;
                };
                passed += 1;
                let mut slot_of = |key: Labels| match keys.get(&key) {
                    Some(&s) => s,
                    None => {
                        keys.insert(key.clone(), key_list.len());
                        key_list.push(key);
                        key_list.len() - 1
                    }
                };
                let (stream, metadata, parsed) = match (out.labels, p.categorize) {
                    // Labels untouched by the pipeline: one lookup per (stream, metadata).
                    (None, false) => {
                        let s = match cache.get(meta.refs()) {
                            Some(s) => s,
                            None => {
                                let s = slot_of(
                                    Pipeline::labels_of(&info_view.labels, meta).to_labels(),
                                );
                                cache.insert(meta.refs(), s);
                                s
                            }
                        };
                        (s, Vec::new(), Vec::new())
                    }
                    (labels, true) => {
                        let labels =
                            labels.unwrap_or_else(|| Pipeline::labels_of(&info_view.labels, meta));
                        let s = match cache.get(&[]) {
                            Some(s) => s,
                            None => {
                                let s = slot_of(base.clone());
                                cache.insert(&[], s);
                                s
                            }
                        };
                        (
                            s,
                            owned(labels.of_origin(Origin::Metadata)),
                            owned(labels.of_origin(Origin::Parsed)),
                        )
                    }
                    (Some(labels), false) => (slot_of(labels.to_labels()), Vec::new(), Vec::new()),
                };
                seq += 1;
                top.push(
                    Held {
                        key: (ts, seq),
                        stream,
                        entry: LogEntry {
                            ts,
                            line: String::from_utf8_lossy(&out.line).into_owned(),
                            metadata,
                            parsed,
                        },
                    },
                    limit,
                );
            });
            ControlFlow::Continue(())
        })
        .await?;
    stats.scan = scan;
    stats.post_filter_lines = passed;
    let mut held = top.into_vec();
    match p.direction {
        Direction::Backward => held.sort_by_key(|h| Reverse(h.key)),
        Direction::Forward => held.sort_by_key(|h| h.key),
    }
    let mut streams: Vec<Option<StreamResult>> = vec![None; key_list.len()];
    for h in held {
        let slot = streams[h.stream].get_or_insert_with(|| StreamResult {
            labels: key_list[h.stream].clone(),
            entries: Vec::new(),
        });
        if let (Some(iv), Some(last)) = (p.interval, slot.entries.last()) {
            if (h.entry.ts - last.ts).abs() < iv {
                continue;
            }
        }
        slot.entries.push(h.entry);
    }
    let mut out: Vec<StreamResult> = streams.into_iter().flatten().collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(out)
}

fn owned(v: Vec<(&str, &str)>) -> Vec<(String, String)> {
    v.into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Metric queries.

type Sample = (Arc<Labels>, f64);
/// One vector per step.
type Steps = Vec<Vec<Sample>>;

struct Evaluator<'a> {
    source: &'a dyn LogSource,
    p: &'a QueryParams,
    steps: &'a [i64],
    stats: &'a mut QueryStats,
}

fn scalar_value(m: &MetricExpr) -> Option<f64> {
    match m {
        MetricExpr::Literal(v) => Some(*v),
        MetricExpr::Binary { op, lhs, rhs, .. } => {
            let (a, b) = (scalar_value(lhs)?, scalar_value(rhs)?);
            let (v, keep) = scalar_op(*op, a, b, true);
            keep.then_some(v)
        }
        _ => None,
    }
}

/// Applies an arithmetic/comparison operator to two numbers. For comparisons the value is 0/1
/// with `bool`, else `a` and whether the comparison held.
fn scalar_op(op: BinOp, a: f64, b: f64, return_bool: bool) -> (f64, bool) {
    let cmp = |c: bool| {
        if return_bool {
            (if c { 1.0 } else { 0.0 }, true)
        } else {
            (a, c)
        }
    };
    match op {
        BinOp::Add => (a + b, true),
        BinOp::Sub => (a - b, true),
        BinOp::Mul => (a * b, true),
        BinOp::Div => (a / b, true),
        BinOp::Mod => (a % b, true),
        BinOp::Pow => (a.powf(b), true),
        BinOp::Eq => cmp(a == b),
        BinOp::Neq => cmp(a != b),
        BinOp::Gt => cmp(a > b),
        BinOp::Gte => cmp(a >= b),
        BinOp::Lt => cmp(a < b),
        BinOp::Lte => cmp(a <= b),
        BinOp::And | BinOp::Or | BinOp::Unless => (a, true),
    }
}

fn group_labels(l: &Labels, g: &Grouping) -> Labels {
    let keep: Vec<Label> = l
        .iter()
        .filter(|x| g.labels.contains(&x.name) != g.without)
        .cloned()
        .collect();
    Labels::from_sorted(keep)
}

impl Evaluator<'_> {
    fn eval<'s>(
        &'s mut self,
        m: &'s MetricExpr,
    ) -> futures::future::BoxFuture<'s, Result<Steps, Error>> {
        Box::pin(async move {
            match m {
                MetricExpr::Literal(v) => Ok(self
                    .steps
                    .iter()
                    .map(|_| vec![(Arc::new(Labels::default()), *v)])
                    .collect()),
                MetricExpr::VectorFn(v) => Ok(self
                    .steps
                    .iter()
                    .map(|_| vec![(Arc::new(Labels::default()), *v)])
                    .collect()),
                MetricExpr::Range {
                    op,
                    param,
                    range,
                    grouping,
                } => self.range(*op, *param, range, grouping.as_ref()).await,
                MetricExpr::Vector {
                    op,
                    param,
                    grouping,
                    expr,
                } => {
                    let inner = self.eval(expr).await?;
                    Ok(inner
                        .into_iter()
                        .map(|v| aggregate(*op, *param, grouping.as_ref(), v))
                        .collect())
                }
                MetricExpr::Binary {
                    op,
                    lhs,
                    rhs,
                    return_bool,
                    matching,
                } => {
                    let ls = lhs.is_scalar();
                    let rs = rhs.is_scalar();
                    let l = self.eval(lhs).await?;
                    let r = self.eval(rhs).await?;
                    l.into_iter()
                        .zip(r)
                        .map(|(a, b)| binary(*op, a, b, ls, rs, *return_bool, matching.as_ref()))
                        .collect()
                }
                MetricExpr::LabelReplace {
                    expr,
                    dst,
                    replacement,
                    src,
                    regex,
                } => {
                    let re = regex::Regex::new(&format!("^(?s:{regex})$")).map_err(|e| {
                        Error::BadRequest(format!(
                            "invalid regular expression in label_replace(): {e}"
                        ))
                    })?;
                    let inner = self.eval(expr).await?;
                    Ok(inner
                        .into_iter()
                        .map(|v| {
                            v.into_iter()
                                .map(|(l, x)| {
                                    let val = l.get(src).unwrap_or("");
                                    match re.captures(val) {
                                        Some(c) => {
                                            let mut out = String::new();
                                            c.expand(replacement, &mut out);
                                            let mut nl = (*l).clone();
                                            if out.is_empty() {
                                                nl.remove(dst);
                                            } else {
                                                nl.set(dst, &out);
                                            }
                                            (Arc::new(nl), x)
                                        }
                                        None => (l, x),
                                    }
                                })
                                .collect()
                        })
                        .collect())
                }
            }
        })
    }

    /// Extracts samples of a log range and evaluates the range aggregation at every step.
    async fn range(
        &mut self,
        op: RangeOp,
        param: Option<f64>,
        r: &LogRange,
        grouping: Option<&Grouping>,
    ) -> Result<Steps, Error> {
        let pipeline = Pipeline::new(&r.log.stages)?;
        let post: Vec<Pipeline> = match &r.unwrap {
            Some(u) => vec![Pipeline::new(
                &u.post_filters
                    .iter()
                    .cloned()
                    .map(super::ast::Stage::LabelFilter)
                    .collect::<Vec<_>>(),
            )?],
            None => Vec::new(),
        };
        let Some((tenants, matchers)) = split_tenants(&self.p.tenants, &r.log.matchers) else {
            // No tenant selected: nothing to read, so only absent_over_time has a value.
            let absent = Arc::new(absent_labels(&r.log.matchers));
            return Ok(self
                .steps
                .iter()
                .map(|_| {
                    if op == RangeOp::AbsentOverTime {
                        vec![(absent.clone(), 1.0)]
                    } else {
                        Vec::new()
                    }
                })
                .collect());
        };
        let federated = self.p.tenants.is_federated();
        let first = self.steps.first().copied().unwrap_or(self.p.end);
        let last = self.steps.last().copied().unwrap_or(self.p.end);
        // Windows are (t - range, t]; the scan range is [start, end).
        let scan_start = first - r.offset_ns - r.range_ns + 1;
        let scan_end = last - r.offset_ns + 1;
        let req = ScanRequest {
            tenants,
            matchers: matchers.clone(),
            start: scan_start,
            end: scan_end,
            required: r
                .log
                .required_substrings()
                .into_iter()
                .map(|s| s.as_bytes().to_vec())
                .collect(),
        };
        let mut series = SeriesSet::default();
        let mut error: Option<Error> = None;
        let mut passed = 0u64;
        let unwrap = r.unwrap.as_ref();
        let scan = self
            .source
            .scan(&req, &mut |info, batch| {
                let base = Arc::new(stream_labels(info, federated));
                let view = StreamInfo {
                    tenant: info.tenant.clone(),
                    labels: base.clone(),
                    fingerprint: info.fingerprint,
                };
                let mut cache = BatchSlots::default();
                let mut stop = false;
                pipeline.candidates(batch, &mut |i| {
                    if stop {
                        return;
                    }
                    let ts = batch.ts[i];
                    let meta = batch.metadata(i);
                    let Some(out) = pipeline.process(ts, batch.line(i), &view, meta) else {
                        return;
                    };
                    passed += 1;
                    // Fast path: labels are the stream's plus structured metadata; resolve the
                    // series once per distinct (stream, metadata) instead of once per entry.
                    if out.labels.is_none() && unwrap.is_none() {
                        let slot = match cache.get(meta.refs()) {
                            Some(slot) => slot,
                            None => {
                                let full = Pipeline::labels_of(&base, meta).to_labels();
                                let key = match grouping {
                                    Some(g) => group_labels(&full, g),
                                    None => full,
                                };
                                let slot = series.slot(key);
                                cache.insert(meta.refs(), slot);
                                slot
                            }
                        };
                        series.push(slot, ts, sample_value(op, &out.line));
                        return;
                    }
                    let mut labels = out
                        .labels
                        .unwrap_or_else(|| Pipeline::labels_of(&base, meta));
                    let value = match unwrap {
                        Some(u) => {
                            let raw = labels.get(&u.label).unwrap_or("").to_string();
                            labels.remove(&u.label);
                            let parsed = if raw.is_empty() {
                                Err(format!("label {} is missing or empty", u.label))
                            } else {
                                convert(&raw, u.conv)
                            };
                            parsed.unwrap_or_else(|e| {
                                sample_error(&mut labels, e);
                                0.0
                            })
                        }
                        None => sample_value(op, &out.line),
                    };
                    if !post.is_empty() {
                        let keep = post[0].process_labels(&mut labels);
                        if !keep {
                            return;
                        }
                    }
                    if let Some(kind) = labels.get(ERROR_LABEL) {
                        let shown = labels.to_labels();
                        error = Some(Error::BadRequest(format!(
                            "pipeline error: '{kind}' for series: '{shown}'.\nUse a label filter to intentionally skip this error. (e.g | __error__!=\"{kind}\").\nTo skip all potential errors you can match empty errors.(e.g __error__=\"\")\nThe label filter can also be specified after unwrap. (e.g | unwrap latency | __error__=\"\" )"
                        )));
                        stop = true;
                        return;
                    }
                    let full = labels.to_labels();
                    let key = match grouping {
                        Some(g) => group_labels(&full, g),
                        None => full,
                    };
                    let slot = series.slot(key);
                    series.push(slot, ts, value);
                });
                if stop {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .await?;
        self.stats.scan.chunks += scan.chunks;
        self.stats.scan.entries += scan.entries;
        self.stats.scan.bytes += scan.bytes;
        self.stats.post_filter_lines += passed;
        if let Some(e) = error {
            return Err(e);
        }
        let mut out: Steps = vec![Vec::new(); self.steps.len()];
        if op == RangeOp::AbsentOverTime {
            let labels = Arc::new(absent_labels(&r.log.matchers));
            let mut all: Vec<i64> = series.points.iter().flatten().map(|(t, _)| *t).collect();
            all.sort_unstable();
            for (i, t) in self.steps.iter().enumerate() {
                let hi = t - r.offset_ns;
                let lo = hi - r.range_ns;
                let a = all.partition_point(|x| *x <= lo);
                let b = all.partition_point(|x| *x <= hi);
                if a == b {
                    out[i].push((labels.clone(), 1.0));
                }
            }
            return Ok(out);
        }
        let range_s = r.range_ns as f64 / 1e9;
        for (labels, mut pts) in series.labels.into_iter().zip(series.points) {
            if !pts.windows(2).all(|w| w[0].0 <= w[1].0) {
                pts.sort_by_key(|p| p.0);
            }
            let (mut a, mut b) = (0usize, 0usize);
            for (i, t) in self.steps.iter().enumerate() {
                let hi = t - r.offset_ns;
                let lo = hi - r.range_ns;
                while b < pts.len() && pts[b].0 <= hi {
                    b += 1;
                }
                while a < b && pts[a].0 <= lo {
                    a += 1;
                }
                if a == b {
                    continue;
                }
                if let Some(v) = range_value(op, param, &pts[a..b], range_s, lo, hi) {
                    out[i].push((labels.clone(), v));
                }
            }
        }
        Ok(out)
    }
}

/// Series of a range aggregation: labels and samples by slot.
#[derive(Default)]
struct SeriesSet {
    labels: Vec<Arc<Labels>>,
    points: Vec<Vec<(i64, f64)>>,
    index: HashMap<Arc<Labels>, usize>,
}

impl SeriesSet {
    fn slot(&mut self, l: Labels) -> usize {
        if let Some(&i) = self.index.get(&l) {
            return i;
        }
        let l = Arc::new(l);
        self.index.insert(l.clone(), self.labels.len());
        self.labels.push(l);
        self.points.push(Vec::new());
        self.labels.len() - 1
    }

    fn push(&mut self, slot: usize, ts: i64, v: f64) {
        self.points[slot].push((ts, v));
    }
}

/// Remembers, within one batch, the slot of each distinct metadata combination (by the batch's
/// pair indexes), so labels are built once per combination instead of once per entry.
#[derive(Default)]
struct BatchSlots {
    seen: Vec<(Vec<u32>, usize)>,
}

impl BatchSlots {
    fn get(&self, refs: &[u32]) -> Option<usize> {
        self.seen
            .iter()
            .find(|(r, _)| r.as_slice() == refs)
            .map(|(_, s)| *s)
    }

    fn insert(&mut self, refs: &[u32], slot: usize) {
        self.seen.push((refs.to_vec(), slot));
    }
}

fn sample_error(labels: &mut EntryLabels, details: String) {
    if labels.get(ERROR_LABEL).is_none() {
        labels.set(ERROR_LABEL, "SampleExtractionErr".into(), Origin::Parsed);
        labels.set(ERROR_DETAILS_LABEL, details, Origin::Parsed);
    }
}

fn convert(s: &str, conv: UnwrapConv) -> Result<f64, String> {
    let s = s.trim();
    let v = match conv {
        UnwrapConv::None => s.parse::<f64>().ok(),
        UnwrapConv::Duration | UnwrapConv::DurationSeconds => units::parse_go_duration(s),
        UnwrapConv::Bytes => units::parse_bytes(s),
    };
    v.ok_or_else(|| format!("cannot convert {s:?} to a number"))
}

fn sample_value(op: RangeOp, line: &[u8]) -> f64 {
    match op {
        RangeOp::BytesOverTime | RangeOp::BytesRate => line.len() as f64,
        _ => 1.0,
    }
}

fn absent_labels(matchers: &[Matcher]) -> Labels {
    let mut pairs: Vec<(String, String)> = matchers
        .iter()
        .filter(|m| m.op == MatchOp::Equal && m.name != TENANT_LABEL)
        .map(|m| (m.name.clone(), m.value.clone()))
        .collect();
    pairs.sort();
    pairs.dedup_by(|a, b| a.0 == b.0);
    Labels::from_pairs(pairs)
}

/// Prometheus' quantile with linear interpolation (φ outside [0,1] gives ±Inf).
fn quantile(phi: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    if phi < 0.0 {
        return f64::NEG_INFINITY;
    }
    if phi > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(Ordering::Equal));
    let n = values.len() as f64;
    let rank = phi * (n - 1.0);
    let lo = rank.floor().max(0.0) as usize;
    let hi = (lo + 1).min(values.len() - 1);
    let w = rank - rank.floor();
    values[lo] * (1.0 - w) + values[hi] * w
}

fn range_value(
    op: RangeOp,
    param: Option<f64>,
    pts: &[(i64, f64)],
    range_s: f64,
    lo: i64,
    hi: i64,
) -> Option<f64> {
    let n = pts.len() as f64;
    let sum = || pts.iter().map(|p| p.1).sum::<f64>();
    let var = || {
        // Welford, as Prometheus computes stdvar_over_time.
        let (mut mean, mut m2, mut k) = (0.0, 0.0, 0.0);
        for p in pts {
            k += 1.0;
            let d = p.1 - mean;
            mean += d / k;
            m2 += d * (p.1 - mean);
        }
        m2 / k
    };
    Some(match op {
        RangeOp::CountOverTime => n,
        RangeOp::Rate => sum() / range_s,
        RangeOp::BytesOverTime => sum(),
        RangeOp::BytesRate => sum() / range_s,
        RangeOp::SumOverTime => sum(),
        RangeOp::AvgOverTime => sum() / n,
        RangeOp::MaxOverTime => pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max),
        RangeOp::MinOverTime => pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min),
        RangeOp::StdvarOverTime => var(),
        RangeOp::StddevOverTime => var().sqrt(),
        RangeOp::QuantileOverTime => {
            let mut v: Vec<f64> = pts.iter().map(|p| p.1).collect();
            quantile(param.unwrap_or(0.5), &mut v)
        }
        RangeOp::FirstOverTime => pts[0].1,
        RangeOp::LastOverTime => pts[pts.len() - 1].1,
        RangeOp::RateCounter => loki_rate_counter(pts, (hi - lo).max(1)),
        RangeOp::AbsentOverTime => return None,
    })
}

/// Loki's `rate_counter`: Prometheus' extrapolated counter rate as Loki's `extrapolatedRate`
/// computes it — anchored on the window's first sample (`rangeStart = first.T - range`,
/// `rangeEnd = last.T`) with Loki's mix of nanosecond timestamps and millisecond ranges kept, so
/// that results equal Loki's; 0 (not absent) for fewer than two samples.
fn loki_rate_counter(pts: &[(i64, f64)], range_ns: i64) -> f64 {
    if pts.len() < 2 {
        return 0.0;
    }
    let (first, last) = (pts[0], pts[pts.len() - 1]);
    let range_start = first.0 - range_ns / 1_000_000;
    let range_end = last.0;
    let mut delta = last.1 - first.1;
    let mut prev = 0.0;
    for p in pts {
        if p.1 < prev {
            delta += prev;
        }
        prev = p.1;
    }
    let mut to_start = (first.0 - range_start) as f64 / 1000.0;
    let to_end = (range_end - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let avg = sampled / (pts.len() - 1) as f64;
    if delta > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / delta);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg * 1.1;
    let mut extrap = sampled;
    extrap += if to_start < threshold {
        to_start
    } else {
        avg / 2.0
    };
    extrap += if to_end < threshold {
        to_end
    } else {
        avg / 2.0
    };
    delta * (extrap / sampled) / (range_ns as f64 / 1e9)
}

fn aggregate(
    op: VectorOp,
    param: Option<i64>,
    g: Option<&Grouping>,
    v: Vec<Sample>,
) -> Vec<Sample> {
    let default_g = Grouping::default();
    let g = g.unwrap_or(&default_g);
    match op {
        VectorOp::Sort | VectorOp::SortDesc => {
            let mut v = v;
            v.sort_by(|a, b| {
                let o =
                    a.1.partial_cmp(&b.1)
                        .unwrap_or_else(|| a.1.is_nan().cmp(&b.1.is_nan()));
                if op == VectorOp::Sort {
                    o
                } else {
                    o.reverse()
                }
            });
            return v;
        }
        VectorOp::Topk | VectorOp::Bottomk | VectorOp::ApproxTopk => {
            let k = param.unwrap_or(1).max(0) as usize;
            let mut groups: Vec<(Labels, Vec<Sample>)> = Vec::new();
            let mut idx: HashMap<Labels, usize> = HashMap::new();
            for s in v {
                let key = group_labels(&s.0, g);
                let i = *idx.entry(key.clone()).or_insert_with(|| {
                    groups.push((key, Vec::new()));
                    groups.len() - 1
                });
                groups[i].1.push(s);
            }
            let mut out = Vec::new();
            for (_, mut members) in groups {
                members.sort_by(|a, b| {
                    let o = b.1.partial_cmp(&a.1).unwrap_or(Ordering::Equal);
                    if op == VectorOp::Bottomk {
                        o.reverse()
                    } else {
                        o
                    }
                });
                members.truncate(k);
                out.extend(members);
            }
            return out;
        }
        _ => {}
    }
    struct Acc {
        sum: f64,
        count: f64,
        min: f64,
        max: f64,
        mean: f64,
        m2: f64,
    }
    let mut groups: Vec<(Arc<Labels>, Acc)> = Vec::new();
    let mut idx: HashMap<Labels, usize> = HashMap::new();
    for (l, x) in v {
        let key = group_labels(&l, g);
        let i = *idx.entry(key.clone()).or_insert_with(|| {
            groups.push((
                Arc::new(key),
                Acc {
                    sum: 0.0,
                    count: 0.0,
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                    mean: 0.0,
                    m2: 0.0,
                },
            ));
            groups.len() - 1
        });
        let a = &mut groups[i].1;
        a.sum += x;
        a.count += 1.0;
        a.min = a.min.min(x);
        a.max = a.max.max(x);
        let d = x - a.mean;
        a.mean += d / a.count;
        a.m2 += d * (x - a.mean);
    }
    groups
        .into_iter()
        .map(|(l, a)| {
            let v = match op {
                VectorOp::Sum => a.sum,
                VectorOp::Avg => a.mean,
                VectorOp::Min => a.min,
                VectorOp::Max => a.max,
                VectorOp::Count => a.count,
                VectorOp::Stdvar => a.m2 / a.count,
                VectorOp::Stddev => (a.m2 / a.count).sqrt(),
                _ => unreachable!("handled above"),
            };
            (l, v)
        })
        .collect()
}

fn signature(l: &Labels, m: Option<&VectorMatching>) -> Labels {
    match m {
        Some(VectorMatching {
            on: true, labels, ..
        }) => group_labels(
            l,
            &Grouping {
                without: false,
                labels: labels.clone(),
            },
        ),
        Some(VectorMatching {
            on: false, labels, ..
        }) => group_labels(
            l,
            &Grouping {
                without: true,
                labels: labels.clone(),
            },
        ),
        None => l.clone(),
    }
}

fn binary(
    op: BinOp,
    l: Vec<Sample>,
    r: Vec<Sample>,
    l_scalar: bool,
    r_scalar: bool,
    return_bool: bool,
    m: Option<&VectorMatching>,
) -> Result<Vec<Sample>, Error> {
    Ok(if l_scalar && r_scalar {
        let (a, b) = (
            l.first().map_or(f64::NAN, |s| s.1),
            r.first().map_or(f64::NAN, |s| s.1),
        );
        let (v, keep) = scalar_op(op, a, b, true);
        if keep {
            vec![(Arc::new(Labels::default()), v)]
        } else {
            Vec::new()
        }
    } else if r_scalar || l_scalar {
        let (vec, s, scalar_left) = if r_scalar {
            (l, r.first().map_or(f64::NAN, |s| s.1), false)
        } else {
            (r, l.first().map_or(f64::NAN, |s| s.1), true)
        };
        vec.into_iter()
            .filter_map(|(lab, x)| {
                let (a, b) = if scalar_left { (s, x) } else { (x, s) };
                let (v, keep) = scalar_op(op, a, b, return_bool);
                // A filtering comparison keeps the vector element's own value.
                let v = if op.is_comparison() && !return_bool {
                    x
                } else {
                    v
                };
                keep.then_some((lab, v))
            })
            .collect()
    } else {
        match op {
            BinOp::And => {
                let sigs: std::collections::HashSet<Labels> =
                    r.iter().map(|s| signature(&s.0, m)).collect();
                l.into_iter()
                    .filter(|s| sigs.contains(&signature(&s.0, m)))
                    .collect()
            }
            BinOp::Unless => {
                let sigs: std::collections::HashSet<Labels> =
                    r.iter().map(|s| signature(&s.0, m)).collect();
                l.into_iter()
                    .filter(|s| !sigs.contains(&signature(&s.0, m)))
                    .collect()
            }
            BinOp::Or => {
                let sigs: std::collections::HashSet<Labels> =
                    l.iter().map(|s| signature(&s.0, m)).collect();
                let mut out = l;
                out.extend(
                    r.into_iter()
                        .filter(|s| !sigs.contains(&signature(&s.0, m))),
                );
                out
            }
            _ => {
                let card = m.map(|m| &m.card);
                let (one, many, many_is_left, include) = match card {
                    Some(Cardinality::OneToMany(inc)) => (l, r, false, inc.clone()),
                    Some(Cardinality::ManyToOne(inc)) => (r, l, true, inc.clone()),
                    _ => (r, l, true, Vec::new()),
                };
                let one_to_one = !matches!(
                    card,
                    Some(Cardinality::OneToMany(_)) | Some(Cardinality::ManyToOne(_))
                );
                let mut index: HashMap<Labels, &Sample> = HashMap::new();
                for s in &one {
                    let sig = signature(&s.0, m);
                    if index.insert(sig.clone(), s).is_some() {
                        return Err(Error::BadRequest(format!(
                        "found duplicate series for the match group {sig} on the {} hand-side of the operation; many-to-many matching not allowed: matching labels must be unique on one side",
                        if many_is_left { "right" } else { "left" }
                    )));
                    }
                }
                let mut matched: std::collections::HashSet<Labels> =
                    std::collections::HashSet::new();
                let mut out = Vec::new();
                for s in &many {
                    let sig = signature(&s.0, m);
                    let Some(o) = index.get(&sig) else {
                        continue;
                    };
                    if one_to_one && !matched.insert(sig.clone()) {
                        return Err(Error::BadRequest(
                            "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".to_string(),
                        ));
                    }
                    let (a, b) = if many_is_left { (s.1, o.1) } else { (o.1, s.1) };
                    let (v, keep) = scalar_op(op, a, b, return_bool);
                    if !keep {
                        continue;
                    }
                    let v = if op.is_comparison() && !return_bool {
                        s.1
                    } else {
                        v
                    };
                    let labels = if one_to_one {
                        if op.is_comparison() && !return_bool {
                            (*s.0).clone()
                        } else {
                            sig.clone()
                        }
                    } else {
                        let mut nl = (*s.0).clone();
                        for name in &include {
                            match o.0.get(name) {
                                Some(v) => nl.set(name, v),
                                None => nl.remove(name),
                            }
                        }
                        nl
                    };
                    out.push((Arc::new(labels), v));
                }
                out
            }
        }
    })
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
