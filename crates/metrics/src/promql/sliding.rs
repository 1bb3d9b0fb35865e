//! Series-at-a-time evaluation of range functions over a matrix selector (`rate(m[5m])`,
//! `max_over_time(m[1h])`, …) for every step of a range query.
//!
//! The step-wise path re-selects each series' window at every step (a binary search, a copy of
//! the window without stale markers, one allocation per series and step) and then applies the
//! function. Here the first evaluation of such a call on the query's step grid instead walks each
//! series once: the window `(eff - range, eff]` slides forward with two cursors over the series'
//! samples (stale markers removed once), and the same per-window function as the step-wise path
//! ([`super::functions::one_series`]) fills a table of results, steps × series. Later steps only
//! read their row. Values are therefore identical to the step-wise path by construction.
//!
//! Only calls whose result is a pure function of the evaluation time and the window's floats take
//! this path: the argument is a plain matrix selector whose series hold no native histograms,
//! scalar parameters are number literals, and the evaluation is not inside a subquery (whose
//! steps are off the grid). Everything else, and tables that would be too large, stay step-wise.

use std::borrow::Cow;
use std::sync::Arc;

use common::labels::METRIC_NAME;
use common::Labels;
use promql_parser::parser::{Expr, MatrixSelector};

use super::eval::{Evaluator, Window};
use super::functions::{one_series, Out};
use super::plan::{at_ms, dur_ms, offset_ms};
use super::VectorSample;
use crate::{is_stale_nan, Error, Sample};

/// Largest table (steps × series) built; larger ones stay step-wise to bound memory.
const MAX_CELLS: usize = 32 << 20;

/// Results of one call for every step of the grid, step-major.
pub(crate) struct Table {
    series: usize,
    values: Vec<f64>,
    present: Vec<bool>,
    /// Samples inside the windows of each step (what the step-wise path would load).
    loads: Vec<usize>,
    /// Output label set of each series (`__name__` dropped unless the function keeps it).
    labels: Vec<Arc<Labels>>,
    /// Whether the output label sets are distinct (then so is every step's subset of them).
    unique: bool,
}

/// Functions whose float-only window value `one_series` computes without annotations: every
/// range-vector function over a matrix argument (the evaluator routes exactly these here).
pub(super) fn supported(name: &str) -> bool {
    matches!(
        name,
        "rate"
            | "increase"
            | "delta"
            | "irate"
            | "idelta"
            | "deriv"
            | "predict_linear"
            | "changes"
            | "resets"
            | "avg_over_time"
            | "min_over_time"
            | "max_over_time"
            | "sum_over_time"
            | "count_over_time"
            | "quantile_over_time"
            | "stddev_over_time"
            | "stdvar_over_time"
            | "last_over_time"
            | "first_over_time"
            | "present_over_time"
            | "mad_over_time"
            | "double_exponential_smoothing"
            | "ts_of_first_over_time"
            | "ts_of_last_over_time"
            | "ts_of_max_over_time"
            | "ts_of_min_over_time"
    )
}

fn unparen(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

fn literal(e: &Expr) -> Option<f64> {
    match unparen(e) {
        Expr::NumberLiteral(n) => Some(n.val),
        _ => None,
    }
}

/// The matrix selector and scalar parameters of a qualifying call, or `None`.
fn shape<'e>(name: &str, args: &[&'e Expr]) -> Option<(&'e MatrixSelector, f64, f64)> {
    if !supported(name) {
        return None;
    }
    let (m, p, p2) = match name {
        // Out-of-range quantiles warn depending on the data: left to the step-wise path.
        "quantile_over_time" => (
            args.get(1)?,
            literal(args.first()?).filter(|q| (0.0..=1.0).contains(q))?,
            0.0,
        ),
        "predict_linear" => (args.first()?, literal(args.get(1)?)?, 0.0),
        // Invalid factors are errors: left to the step-wise path.
        "double_exponential_smoothing" => (
            args.first()?,
            literal(args.get(1)?).filter(|f| *f > 0.0 && *f < 1.0)?,
            literal(args.get(2)?).filter(|f| *f > 0.0 && *f < 1.0)?,
        ),
        _ if args.len() == 1 => (&args[0], 0.0, 0.0),
        _ => return None,
    };
    match unparen(m) {
        Expr::MatrixSelector(ms) => Some((ms, p, p2)),
        _ => None,
    }
}

/// The result of call node `id` (`name(args)`) at `t` from its table, building the table on the
/// first use; `Ok(None)` when the call or `t` does not qualify (the caller evaluates step-wise).
pub(crate) fn at_step(
    ev: &mut Evaluator,
    id: usize,
    name: &str,
    args: &[&Expr],
    t: i64,
) -> Result<Option<Vec<VectorSample>>, Error> {
    if !ev.sliding_enabled || ev.sub_depth > 0 {
        return Ok(None);
    }
    let Some((start, end, step)) = ev.grid else {
        return Ok(None);
    };
    if step <= 0 || t < start || t > end || (t - start) % step != 0 {
        return Ok(None);
    }
    let k = usize::try_from((t - start) / step).unwrap_or(usize::MAX);
    let Some((ms, p, p2)) = shape(name, args) else {
        return Ok(None);
    };
    let table = match ev.sliding.get(&id) {
        Some(t) => t.clone(),
        None => {
            let t = build(ev, name, ms, p, p2, (start, end, step))?.map(Arc::new);
            ev.sliding.insert(id, t.clone());
            t
        }
    };
    let Some(table) = table else {
        return Ok(None);
    };
    ev.load(table.loads[k])?;
    let row = k * table.series;
    let mut out = Vec::new();
    for (i, l) in table.labels.iter().enumerate() {
        if !table.present[row + i] {
            continue;
        }
        out.push(VectorSample {
            labels: l.clone(),
            t,
            v: table.values[row + i],
            h: None,
        });
    }
    ev.unique_known = table.unique;
    Ok(Some(out))
}

/// Evaluates `name` over every series of `ms` at every step of `grid`, one series at a time.
fn build(
    ev: &mut Evaluator,
    name: &str,
    ms: &MatrixSelector,
    p: f64,
    p2: f64,
    grid: (i64, i64, i64),
) -> Result<Option<Table>, Error> {
    let (start, end, step) = grid;
    let (data, labels) = ev.series_arc(&ms.vs);
    if data.iter().any(|s| !s.histograms.is_empty()) {
        return Ok(None);
    }
    let steps = usize::try_from((end - start) / step)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let cells = steps.saturating_mul(data.len());
    if cells > MAX_CELLS {
        return Ok(None);
    }
    let range = dur_ms(&ms.range);
    let at = at_ms(&ms.vs.at, ev.start, ev.end);
    let off = offset_ms(&ms.vs.offset);
    let n = data.len();
    let keep_name = matches!(name, "last_over_time" | "first_over_time");
    let out_labels: Vec<Arc<Labels>> = labels
        .iter()
        .map(|l| {
            let mut l = l.clone();
            if !keep_name {
                ev.drop_name(&mut l);
            }
            l
        })
        .collect();
    let unique = {
        let mut seen = std::collections::HashSet::with_capacity(n);
        out_labels.iter().all(|l| seen.insert(&**l))
    };
    let mut table = Table {
        series: n,
        values: vec![0.0; cells],
        present: vec![false; cells],
        loads: vec![0; steps],
        labels: out_labels,
        unique,
    };
    for (i, s) in data.iter().enumerate() {
        if i % 256 == 255 {
            ev.check_deadline()?;
        }
        let clean: Cow<'_, [Sample]> = if s.samples.iter().any(|p| is_stale_nan(p.v)) {
            Cow::Owned(
                s.samples
                    .iter()
                    .filter(|p| !is_stale_nan(p.v))
                    .copied()
                    .collect(),
            )
        } else {
            Cow::Borrowed(&s.samples)
        };
        let metric = labels[i].get(METRIC_NAME).unwrap_or("");
        // Window `(eff - range, eff]` is `clean[a..b]`; both ends only move forward.
        let (mut a, mut b) = (0, 0);
        for k in 0..steps {
            let t = start + k as i64 * step;
            let eff = at.unwrap_or(t) - off;
            let lo = eff - range;
            while a < clean.len() && clean[a].t <= lo {
                a += 1;
            }
            b = b.max(a);
            while b < clean.len() && clean[b].t <= eff {
                b += 1;
            }
            if b == a {
                continue;
            }
            table.loads[k] += b - a;
            let w = Window {
                start: lo,
                end: eff,
                range_ms: range,
            };
            match one_series(ev, name, &clean[a..b], &[], metric, w, t, p, p2) {
                Some(Out::F(v)) => {
                    table.values[k * n + i] = v;
                    table.present[k * n + i] = true;
                }
                // Float-only windows never yield histograms; be safe and stay step-wise.
                Some(Out::H(_)) => return Ok(None),
                None => {}
            }
        }
    }
    Ok(Some(table))
}
