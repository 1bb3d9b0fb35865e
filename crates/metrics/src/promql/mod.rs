//! The PromQL engine: Prometheus 3 semantics on top of any [`SeriesSource`].
//!
//! A query is parsed with `promql-parser`, then [`plan`] walks the AST to find every vector and
//! matrix selector together with the time range it can possibly touch (ranges, offsets, `@`,
//! subqueries and the lookback delta included). All of them are fetched from the source up front
//! (the only async part), and the expression is then evaluated synchronously in memory, one
//! evaluation timestamp at a time ([`eval`]). A range query evaluates every step; an instant
//! query is a range query of one step that keeps its vector shape. Two accelerations keep the
//! results bit-identical: range functions over selectors are precomputed series-at-a-time over
//! sliding windows for the whole step grid ([`sliding`]), and large range queries split their
//! steps between threads (`eval_range_split`). Design notes: `../tsdb/DESIGN.md`.
//!
//! Semantics follow the Prometheus documentation and its `promqltest` corpus (we wrote our own
//! cases, see `testdata/`): left-open windows `(t-range, t]`, lookback `(t-5m, t]`, stale markers
//! ending a series, `__name__` dropped by value-changing operations, counter extrapolation.
//!
//! Compatibility is checked two ways: our own golden scripts (`testdata/*.test`, run by
//! `tests::golden_scripts`), and an ignored probe that replays a local checkout of upstream's
//! promqltest corpus (`PROMQLTEST_DIR=… cargo test -p metrics --lib upstream_corpus -- --ignored
//! --nocapture`); nothing upstream is vendored.
//!
//! Known divergences from Prometheus 3:
//! - Syntax promql-parser 0.11 does not parse is unsupported: duration expressions, `anchored`/
//!   `smoothed` ranges, `fill()` modifiers, trim operators (`>/`, `</`), `info()`.
//! - Delayed `__name__` removal (an upstream feature flag) is not implemented; names are dropped
//!   eagerly, which is upstream's default.
//! - Counter-reset hints are taken as stored; the TSDB-side synthesis of hints (and the
//!   "conflicting counter resets" warning that depends on it) is not reproduced.
//! - Annotations carry no `(line:col)` position suffix (the parser has no positions); parse
//!   errors read `parse error: …` without a position.
//! - Samples of native histograms count as one sample each towards `max_samples`.

mod aggregate;
mod binary;
mod eval;
mod functions;
mod guard;
mod histogram;
mod json;
mod plan;
mod sliding;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Labels;

use crate::{Error, Histogram, HistogramSample, Sample, SeriesSource};

pub use json::{format_float, format_value, result_json};

/// Default lookback delta of Prometheus (5 minutes).
pub const DEFAULT_LOOKBACK_DELTA_MS: i64 = 5 * 60 * 1000;

/// Step of subqueries that do not state one (`foo[5m:]`); Prometheus uses the global evaluation
/// interval, whose default is one minute.
pub const DEFAULT_SUBQUERY_STEP_MS: i64 = 60 * 1000;

/// Limits and knobs of one query.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// How far back an instant selector looks for the latest sample (Prometheus default 5m).
    pub lookback_delta_ms: i64,
    /// Most samples a query may hold in memory at once (Prometheus `--query.max-samples`).
    pub max_samples: usize,
    /// Wall-clock budget of the evaluation (fetching included).
    pub timeout: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            lookback_delta_ms: DEFAULT_LOOKBACK_DELTA_MS,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
        }
    }
}

/// The result of an expression, in the four PromQL value types.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A scalar at an evaluation time (ms).
    Scalar {
        /// Evaluation time, ms.
        t: i64,
        /// The value.
        v: f64,
    },
    /// A string at an evaluation time (ms).
    String {
        /// Evaluation time, ms.
        t: i64,
        /// The value.
        v: String,
    },
    /// An instant vector.
    Vector(Vec<VectorSample>),
    /// A range vector (range queries, or instant queries of a matrix selector / subquery).
    Matrix(Vec<MatrixSeries>),
}

/// One element of an instant vector: a float (`h == None`) or a native histogram.
#[derive(Clone, Debug, PartialEq)]
pub struct VectorSample {
    /// Series labels, shared: selectors hand out the same set at every step of a range query.
    pub labels: Arc<Labels>,
    /// Timestamp, ms (the evaluation time).
    pub t: i64,
    /// Float value (0 when `h` is set).
    pub v: f64,
    /// Native histogram value, if this element is a histogram.
    pub h: Option<Arc<Histogram>>,
}

/// One series of a range vector.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MatrixSeries {
    /// Series labels.
    pub labels: Arc<Labels>,
    /// Float points in time order.
    pub samples: Vec<Sample>,
    /// Histogram points in time order.
    pub histograms: Vec<HistogramSample>,
}

/// A query's value plus the annotations Prometheus returns next to it.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    /// The value.
    pub value: Value,
    /// Warnings (`warnings` in the API envelope).
    pub warnings: Vec<String>,
    /// Informational annotations (`infos` in the API envelope).
    pub infos: Vec<String>,
}

/// Parses `query` into the promql-parser AST, mapping failures to `bad_data` errors.
pub fn parse(query: &str) -> Result<promql_parser::parser::Expr, Error> {
    guard::check_numeric_durations(query)?;
    promql_parser::parser::parse(query).map_err(|e| Error::BadData(format!("parse error: {e}")))
}

/// Evaluates `query` at `t_ms`.
pub async fn instant_query(
    src: &dyn SeriesSource,
    query: &str,
    t_ms: i64,
    opts: &EngineOptions,
) -> Result<QueryResult, Error> {
    run(src, query, t_ms, t_ms, 0, true, opts, Tuning::default()).await
}

/// Evaluates `query` at `start_ms`, `start_ms + step_ms`, … up to `end_ms` (inclusive). The value is
/// always a matrix, sorted by labels.
pub async fn range_query(
    src: &dyn SeriesSource,
    query: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    opts: &EngineOptions,
) -> Result<QueryResult, Error> {
    range_query_tuned(
        src,
        query,
        start_ms,
        end_ms,
        step_ms,
        opts,
        Tuning::default(),
    )
    .await
}

/// How a range query is evaluated; results are the same either way (tests compare the paths).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tuning {
    /// Precompute range functions over selectors series-at-a-time ([`sliding`]).
    pub sliding: bool,
    /// Threads a range query's steps may be split between.
    pub threads: usize,
    /// Fewest steps per thread worth a thread.
    pub min_steps_per_thread: usize,
    /// Fewest fetched samples worth more than one thread.
    pub min_samples: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            sliding: true,
            threads: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(8),
            min_steps_per_thread: 16,
            min_samples: 50_000,
        }
    }
}

/// [`range_query`] with explicit [`Tuning`].
pub(crate) async fn range_query_tuned(
    src: &dyn SeriesSource,
    query: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    opts: &EngineOptions,
    tuning: Tuning,
) -> Result<QueryResult, Error> {
    if step_ms <= 0 {
        return Err(Error::BadData(
            "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
        ));
    }
    if end_ms < start_ms {
        return Err(Error::BadData(
            "end timestamp must not be before start time".into(),
        ));
    }
    run(src, query, start_ms, end_ms, step_ms, false, opts, tuning).await
}

#[allow(clippy::too_many_arguments)]
async fn run(
    src: &dyn SeriesSource,
    query: &str,
    start: i64,
    end: i64,
    step: i64,
    instant: bool,
    opts: &EngineOptions,
    tuning: Tuning,
) -> Result<QueryResult, Error> {
    let began = Instant::now();
    // Like Prometheus, a non-positive lookback delta means the default.
    let normalised;
    let opts = if opts.lookback_delta_ms <= 0 {
        normalised = EngineOptions {
            lookback_delta_ms: DEFAULT_LOOKBACK_DELTA_MS,
            ..opts.clone()
        };
        &normalised
    } else {
        opts
    };
    let expr = parse(query)?;
    if !instant {
        use promql_parser::parser::value::ValueType;
        let vt = expr.value_type();
        if vt != ValueType::Scalar && vt != ValueType::Vector {
            return Err(Error::BadData(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                vt_name(vt)
            )));
        }
    }
    let selectors = plan::collect(&expr, start, end, opts.lookback_delta_ms)?;
    let deadline = began + opts.timeout;
    let data = tokio::time::timeout(opts.timeout, plan::fetch(src, &selectors))
        .await
        .map_err(|_| Error::Timeout("while fetching series".into()))??;
    cpu_bound(|| {
        let labels = eval::share_labels(&data);
        if !instant {
            return eval_range_split(
                &expr,
                data,
                labels,
                opts,
                (start, end, step),
                deadline,
                tuning,
            );
        }
        let mut ev = eval::Evaluator::new(data, labels, opts, start, end, step, deadline);
        ev.sliding_enabled = tuning.sliding;
        let value = ev.eval_instant(&expr, start)?;
        Ok(QueryResult {
            value,
            warnings: ev.warnings,
            infos: ev.infos,
        })
    })
}

/// Runs CPU-bound evaluation so that it does not starve the runtime: on a multi-threaded tokio
/// runtime the worker hands its other tasks (ingest, other requests) to another thread first
/// (`block_in_place`); elsewhere (single-threaded test runtimes, no runtime) it just runs.
fn cpu_bound<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// What one thread's share of a range query produced.
struct Part {
    value: Result<Value, Error>,
    warnings: Vec<String>,
    infos: Vec<String>,
    kept: usize,
    need: usize,
}

/// Evaluates a range query, splitting its steps into contiguous runs evaluated on separate
/// threads when the query is large enough. Each step is a pure function of its timestamp, so the
/// parts are independent; they are joined in step order so that annotations keep their first-seen
/// order and the `max_samples` accounting (cumulative over steps) fails exactly where a
/// sequential evaluation would have failed.
fn eval_range_split(
    expr: &promql_parser::parser::Expr,
    data: std::collections::HashMap<usize, Arc<Vec<crate::SeriesData>>>,
    labels: eval::SharedLabels,
    opts: &EngineOptions,
    (start, end, step): (i64, i64, i64),
    deadline: Instant,
    tuning: Tuning,
) -> Result<QueryResult, Error> {
    let steps = u64::try_from((end - start) / step).unwrap_or(0) + 1;
    let fetched: usize = data
        .values()
        .map(|d| {
            d.iter()
                .map(|s| s.samples.len() + s.histograms.len())
                .sum::<usize>()
        })
        .sum();
    let per = tuning.min_steps_per_thread.max(1) as u64;
    let threads = if fetched >= tuning.min_samples {
        (tuning.threads.max(1) as u64).min(steps / per).max(1)
    } else {
        1
    };
    let run_part = |from: u64, to: u64| -> Part {
        let mut ev = eval::Evaluator::new(
            data.clone(),
            labels.clone(),
            opts,
            start,
            end,
            step,
            deadline,
        );
        ev.sliding_enabled = tuning.sliding;
        let first = start + from as i64 * step;
        let last = start + (to as i64 - 1) * step;
        let value = ev.eval_range(expr, first, last, step);
        Part {
            value,
            kept: ev.kept(),
            need: ev.need,
            warnings: std::mem::take(&mut ev.warnings),
            infos: std::mem::take(&mut ev.infos),
        }
    };
    let bounds: Vec<(u64, u64)> = (0..threads)
        .map(|i| (steps * i / threads, steps * (i + 1) / threads))
        .collect();
    let parts: Vec<Part> = if threads == 1 {
        vec![run_part(0, steps)]
    } else {
        std::thread::scope(|sc| {
            let handles: Vec<_> = bounds[1..]
                .iter()
                .map(|&(a, b)| sc.spawn(move || run_part(a, b)))
                .collect();
            let mut parts = vec![run_part(bounds[0].0, bounds[0].1)];
            for h in handles {
                parts.push(h.join().unwrap_or_else(|_| Part {
                    value: Err(Error::Execution("query evaluation thread panicked".into())),
                    warnings: Vec::new(),
                    infos: Vec::new(),
                    kept: 0,
                    need: 0,
                }));
            }
            parts
        })
    };
    let mut kept_before = 0usize;
    let mut warnings: Vec<String> = Vec::new();
    let mut infos: Vec<String> = Vec::new();
    let mut matrices = Vec::with_capacity(parts.len());
    for p in parts {
        if kept_before.saturating_add(p.need) > opts.max_samples {
            return Err(Error::Execution(eval::TOO_MANY_SAMPLES.into()));
        }
        match p.value? {
            Value::Matrix(m) => matrices.push(m),
            _ => {
                return Err(Error::Execution(
                    "range evaluation did not yield a matrix".into(),
                ))
            }
        }
        kept_before = kept_before.saturating_add(p.kept);
        for w in p.warnings {
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
        for i in p.infos {
            if !infos.contains(&i) {
                infos.push(i);
            }
        }
    }
    Ok(QueryResult {
        value: Value::Matrix(merge_parts(matrices)),
        warnings,
        infos,
    })
}

/// Joins the label-sorted matrices of consecutive step runs: series with the same labels are
/// concatenated in run order (so points stay in time order).
fn merge_parts(parts: Vec<Vec<MatrixSeries>>) -> Vec<MatrixSeries> {
    let mut it = parts.into_iter();
    let Some(mut acc) = it.next() else {
        return Vec::new();
    };
    for next in it {
        let mut out = Vec::with_capacity(acc.len().max(next.len()));
        let mut a = acc.into_iter().peekable();
        let mut b = next.into_iter().peekable();
        loop {
            let ord = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => x.labels.cmp(&y.labels),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => break,
            };
            match ord {
                std::cmp::Ordering::Less => out.extend(a.next()),
                std::cmp::Ordering::Greater => out.extend(b.next()),
                std::cmp::Ordering::Equal => {
                    let (mut x, y) = (a.next().unwrap_or_default(), b.next().unwrap_or_default());
                    x.samples.extend(y.samples);
                    x.histograms.extend(y.histograms);
                    out.push(x);
                }
            }
        }
        acc = out;
    }
    acc
}

fn vt_name(vt: promql_parser::parser::value::ValueType) -> &'static str {
    use promql_parser::parser::value::ValueType;
    match vt {
        ValueType::Scalar => "scalar",
        ValueType::Vector => "vector",
        ValueType::Matrix => "range vector",
        ValueType::String => "string",
    }
}
