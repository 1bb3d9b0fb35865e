//! The PromQL engine: Prometheus 3 semantics on top of any [`SeriesSource`].
//!
//! A query is parsed with `promql-parser`, then [`plan`] walks the AST to find every vector and
//! matrix selector together with the time range it can possibly touch (ranges, offsets, `@`,
//! subqueries and the lookback delta included). All of them are fetched from the source up front
//! (the only async part), and the expression is then evaluated synchronously in memory, one
//! evaluation timestamp at a time ([`eval`]). A range query evaluates every step; an instant
//! query is a range query of one step that keeps its vector shape.
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
    run(src, query, t_ms, t_ms, 0, true, opts).await
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
    run(src, query, start_ms, end_ms, step_ms, false, opts).await
}

async fn run(
    src: &dyn SeriesSource,
    query: &str,
    start: i64,
    end: i64,
    step: i64,
    instant: bool,
    opts: &EngineOptions,
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
    let mut ev = eval::Evaluator::new(data, opts, start, end, step, deadline);
    let value = if instant {
        ev.eval_instant(&expr, start)?
    } else {
        ev.eval_range(&expr, start, end, step)?
    };
    Ok(QueryResult {
        value,
        warnings: ev.warnings,
        infos: ev.infos,
    })
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
