//! Query planning: find every selector in the AST with the widest time range its evaluation can
//! touch, and fetch them all from the [`SeriesSource`] before evaluation starts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::labels::METRIC_NAME as METRIC_NAME_LABEL;
use common::{MatchOp, Matcher};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};

use crate::{Error, SeriesData, SeriesSource};

/// One selector to fetch: its identity in the AST, its matcher sets (one per `or` alternative)
/// and the inclusive time range.
pub(crate) struct Fetch {
    pub id: usize,
    pub matcher_sets: Vec<Vec<Matcher>>,
    pub mint: i64,
    pub maxt: i64,
}

/// Identity of a selector node: its address inside the (immutable, pinned) AST.
pub(crate) fn selector_id(vs: &VectorSelector) -> usize {
    vs as *const VectorSelector as usize
}

/// Milliseconds of a duration (saturating).
pub(crate) fn dur_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// Signed milliseconds of an offset modifier.
pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => dur_ms(d),
        Some(Offset::Neg(d)) => -dur_ms(d),
    }
}

/// Milliseconds since the epoch of a `SystemTime` (negative before 1970).
pub(crate) fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => dur_ms(&d),
        Err(e) => -dur_ms(&e.duration()),
    }
}

/// The fixed timestamp of an `@` modifier, if any.
pub(crate) fn at_ms(at: &Option<AtModifier>, start: i64, end: i64) -> Option<i64> {
    match at {
        None => None,
        Some(AtModifier::Start) => Some(start),
        Some(AtModifier::End) => Some(end),
        Some(AtModifier::At(t)) => Some(system_time_ms(t)),
    }
}

/// First timestamp of a subquery: the first multiple of `step` strictly after `from`
/// (Go's truncating division, as Prometheus).
pub(crate) fn subquery_first(from: i64, step: i64) -> i64 {
    let mut s = step * (from / step);
    if s <= from {
        s += step;
    }
    s
}

struct Collector {
    start: i64,
    end: i64,
    lookback: i64,
    out: HashMap<usize, Fetch>,
}

/// Walks `expr` (evaluated at timestamps in `[start, end]`) and returns what to fetch.
pub(crate) fn collect(
    expr: &Expr,
    start: i64,
    end: i64,
    lookback: i64,
) -> Result<Vec<Fetch>, Error> {
    let mut c = Collector {
        start,
        end,
        lookback,
        out: HashMap::new(),
    };
    c.walk(expr, start, end)?;
    let mut v: Vec<Fetch> = c.out.into_values().collect();
    v.sort_by_key(|f| f.id);
    Ok(v)
}

impl Collector {
    fn walk(&mut self, e: &Expr, lo: i64, hi: i64) -> Result<(), Error> {
        match e {
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.walk(p, lo, hi)?;
                }
                self.walk(&a.expr, lo, hi)
            }
            Expr::Unary(u) => self.walk(&u.expr, lo, hi),
            Expr::Binary(b) => {
                self.walk(&b.lhs, lo, hi)?;
                self.walk(&b.rhs, lo, hi)
            }
            Expr::Paren(p) => self.walk(&p.expr, lo, hi),
            Expr::Subquery(sq) => {
                let (lo, hi) = match at_ms(&sq.at, self.start, self.end) {
                    Some(t) => (t, t),
                    None => (lo, hi),
                };
                let off = offset_ms(&sq.offset);
                let range = dur_ms(&sq.range);
                let step = sq
                    .step
                    .as_ref()
                    .map(dur_ms)
                    .filter(|s| *s > 0)
                    .unwrap_or(super::DEFAULT_SUBQUERY_STEP_MS);
                let inner_lo = subquery_first(lo.saturating_sub(off).saturating_sub(range), step);
                let inner_hi = hi.saturating_sub(off);
                self.walk(&sq.expr, inner_lo.min(inner_hi), inner_hi)
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => Ok(()),
            Expr::VectorSelector(vs) => self.add(vs, lo, hi, self.lookback),
            Expr::MatrixSelector(ms) => self.add(&ms.vs, lo, hi, dur_ms(&ms.range)),
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.walk(a, lo, hi)?;
                }
                Ok(())
            }
        }
    }

    fn add(&mut self, vs: &VectorSelector, lo: i64, hi: i64, window: i64) -> Result<(), Error> {
        let (lo, hi) = match at_ms(&vs.at, self.start, self.end) {
            Some(t) => (t, t),
            None => (lo, hi),
        };
        let off = offset_ms(&vs.offset);
        let mint = lo
            .saturating_sub(off)
            .saturating_sub(window)
            .saturating_add(1);
        let maxt = hi.saturating_sub(off);
        let id = selector_id(vs);
        if let Some(f) = self.out.get_mut(&id) {
            f.mint = f.mint.min(mint);
            f.maxt = f.maxt.max(maxt);
            return Ok(());
        }
        self.out.insert(
            id,
            Fetch {
                id,
                matcher_sets: matcher_sets(vs)?,
                mint,
                maxt,
            },
        );
        Ok(())
    }
}

fn convert(m: &promql_parser::label::Matcher) -> Result<Matcher, Error> {
    let op = match m.op {
        PMatchOp::Equal => MatchOp::Equal,
        PMatchOp::NotEqual => MatchOp::NotEqual,
        PMatchOp::Re(_) => MatchOp::Regex,
        PMatchOp::NotRe(_) => MatchOp::NotRegex,
    };
    Matcher::new(op, m.name.clone(), m.value.clone()).map_err(|e| Error::BadData(e.to_string()))
}

/// The matcher sets of a selector: one set normally, one per alternative with `or`.
pub(crate) fn matcher_sets(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>, Error> {
    let mut base = Vec::new();
    if let Some(n) = &vs.name {
        base.push(Matcher::equal(METRIC_NAME_LABEL, n.clone()));
    }
    let mut plain = base.clone();
    for m in &vs.matchers.matchers {
        plain.push(convert(m)?);
    }
    if vs.matchers.or_matchers.is_empty() {
        return Ok(vec![plain]);
    }
    let mut sets = Vec::new();
    for alt in &vs.matchers.or_matchers {
        let mut s = plain.clone();
        for m in alt {
            s.push(convert(m)?);
        }
        sets.push(s);
    }
    Ok(sets)
}

/// Fetches every selector; alternatives of an `or` selector are merged by label set. Selectors
/// with identical matchers (e.g. both sides of `m / on(i) m`) are fetched once over the union of
/// their ranges and share the data.
pub(crate) async fn fetch(
    src: &dyn SeriesSource,
    fetches: &[Fetch],
) -> Result<HashMap<usize, Arc<Vec<SeriesData>>>, Error> {
    let key = |f: &Fetch| {
        f.matcher_sets
            .iter()
            .map(|set| {
                set.iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let mut unique: HashMap<String, (i64, i64, Vec<usize>, usize)> = HashMap::new();
    for (i, f) in fetches.iter().enumerate() {
        let e = unique
            .entry(key(f))
            .or_insert((f.mint, f.maxt, Vec::new(), i));
        e.0 = e.0.min(f.mint);
        e.1 = e.1.max(f.maxt);
        e.2.push(f.id);
    }
    let mut out = HashMap::new();
    for (mint, maxt, ids, first) in unique.into_values() {
        let sets = &fetches[first].matcher_sets;
        let mut all: Vec<SeriesData> = Vec::new();
        for set in sets {
            let got = src.select(set, mint, maxt).await?;
            if sets.len() == 1 {
                all = got;
            } else {
                for s in got {
                    if !all.iter().any(|x| x.labels == s.labels) {
                        all.push(s);
                    }
                }
            }
        }
        all.sort_by(|a, b| a.labels.cmp(&b.labels));
        let all = Arc::new(all);
        for id in ids {
            out.insert(id, all.clone());
        }
    }
    Ok(out)
}
