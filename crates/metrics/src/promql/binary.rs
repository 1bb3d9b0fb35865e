//! Binary operators: arithmetic, comparison (with `bool`), set operators, and vector matching
//! (`on`/`ignoring`, `group_left`/`group_right`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use common::labels::METRIC_NAME;
use common::Labels;
use promql_parser::parser::token::*;
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::eval::{Evaluator, Val};
use super::histogram as nh;
use super::VectorSample;
use crate::{Error, Histogram};

fn is_comparison(op: u16) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

fn drops_name(op: u16) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_MOD | T_POW | T_ATAN2)
}

/// `l op r` for floats: the value and whether a comparison holds (always true for arithmetic).
fn float_op(op: u16, l: f64, r: f64) -> (f64, bool) {
    match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_MOD => (l % r, true),
        T_POW => (l.powf(r), true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => (f64::NAN, false),
    }
}

/// An element operation that may involve histograms; `None` drops the element.
fn elem_op(
    op: u16,
    lv: f64,
    rv: f64,
    lh: Option<&Arc<Histogram>>,
    rh: Option<&Arc<Histogram>>,
) -> Option<(f64, Option<Arc<Histogram>>, bool)> {
    match (lh, rh) {
        (None, None) => {
            let (v, keep) = float_op(op, lv, rv);
            Some((v, None, keep))
        }
        (Some(h), None) => match op {
            T_MUL => Some((0.0, Some(Arc::new(nh::scale(h, rv))), true)),
            T_DIV if rv == 0.0 => Some((0.0, Some(Arc::new(nh::div_by_zero(h))), true)),
            T_DIV => Some((0.0, Some(Arc::new(nh::scale(h, 1.0 / rv))), true)),
            _ => None,
        },
        (None, Some(h)) => match op {
            T_MUL => Some((0.0, Some(Arc::new(nh::scale(h, lv))), true)),
            _ => None,
        },
        (Some(a), Some(b)) if !nh::compatible(a, b) => None,
        (Some(a), Some(b)) => match op {
            T_ADD => Some((0.0, Some(Arc::new(nh::add(a, b))), true)),
            T_SUB => Some((0.0, Some(Arc::new(nh::sub(a, b))), true)),
            T_EQLC => Some((0.0, Some(a.clone()), a == b)),
            T_NEQ => Some((0.0, Some(a.clone()), a != b)),
            _ => None,
        },
    }
}

/// Evaluates a binary expression at `t`.
pub(crate) fn eval(ev: &mut Evaluator, b: &BinaryExpr, t: i64) -> Result<Val, Error> {
    let op = b.op.id();
    let ret_bool = b.return_bool();
    let lhs = ev.eval(&b.lhs, t)?;
    let rhs = ev.eval(&b.rhs, t)?;
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) => {
            let (v, keep) = float_op(op, l, r);
            Ok(Val::Scalar(if is_comparison(op) {
                if keep {
                    1.0
                } else {
                    0.0
                }
            } else {
                v
            }))
        }
        (Val::Vector(v), Val::Scalar(s)) => {
            Ok(Val::Vector(vector_scalar(ev, op, v, s, false, ret_bool, t)))
        }
        (Val::Scalar(s), Val::Vector(v)) => {
            Ok(Val::Vector(vector_scalar(ev, op, v, s, true, ret_bool, t)))
        }
        (Val::Vector(l), Val::Vector(r)) => match op {
            T_LAND | T_LOR | T_LUNLESS => Ok(Val::Vector(set_op(op, l, r, b, t))),
            _ => vector_vector(ev, op, l, r, b, ret_bool, t).map(Val::Vector),
        },
        _ => Err(Error::Execution(
            "binary expression must contain only scalar and instant vector types".into(),
        )),
    }
}

fn vector_scalar(
    ev: &mut Evaluator,
    op: u16,
    v: Vec<VectorSample>,
    s: f64,
    swap: bool,
    ret_bool: bool,
    t: i64,
) -> Vec<VectorSample> {
    let cmp = is_comparison(op);
    let mut out = Vec::with_capacity(v.len());
    for mut e in v {
        let (lv, rv) = if swap { (s, e.v) } else { (e.v, s) };
        let (lh, rh) = if swap {
            (None, e.h.as_ref())
        } else {
            (e.h.as_ref(), None)
        };
        let Some((mut val, h, mut keep)) = elem_op(op, lv, rv, lh, rh) else {
            ev.info(format!(
                "PromQL info: incompatible sample types encountered for binary operator \"{}\"",
                b_op_name(op)
            ));
            continue;
        };
        if cmp && swap && h.is_none() {
            val = e.v;
        }
        if ret_bool {
            val = if keep { 1.0 } else { 0.0 };
            keep = true;
        }
        if !keep {
            continue;
        }
        if drops_name(op) || ret_bool {
            ev.drop_name(&mut e.labels);
        }
        e.v = val;
        e.h = if ret_bool { None } else { h };
        e.t = t;
        out.push(e);
    }
    out
}

fn b_op_name(op: u16) -> &'static str {
    match op {
        T_ADD => "+",
        T_SUB => "-",
        T_MUL => "*",
        T_DIV => "/",
        T_MOD => "%",
        T_POW => "^",
        T_ATAN2 => "atan2",
        T_EQLC => "==",
        T_NEQ => "!=",
        T_GTR => ">",
        T_LSS => "<",
        T_GTE => ">=",
        T_LTE => "<=",
        _ => "?",
    }
}

/// The matching signature of `l`: the `on` labels, or everything but the `ignoring` labels and
/// the metric name.
fn signature(l: &Labels, matching: Option<&LabelModifier>) -> Labels {
    match matching {
        Some(LabelModifier::Include(ls)) => Labels::from_sorted(
            l.iter()
                .filter(|x| ls.labels.contains(&x.name))
                .cloned()
                .collect(),
        ),
        Some(LabelModifier::Exclude(ls)) => Labels::from_sorted(
            l.iter()
                .filter(|x| x.name != METRIC_NAME && !ls.labels.contains(&x.name))
                .cloned()
                .collect(),
        ),
        None => Labels::from_sorted(
            l.iter()
                .filter(|x| x.name != METRIC_NAME)
                .cloned()
                .collect(),
        ),
    }
}

fn set_op(
    op: u16,
    l: Vec<VectorSample>,
    r: Vec<VectorSample>,
    b: &BinaryExpr,
    t: i64,
) -> Vec<VectorSample> {
    let matching = b.modifier.as_ref().and_then(|m| m.matching.as_ref());
    let stamp = |mut s: VectorSample| {
        s.t = t;
        s
    };
    match op {
        T_LAND => {
            let rs: HashSet<Labels> = r.iter().map(|s| signature(&s.labels, matching)).collect();
            l.into_iter()
                .filter(|s| rs.contains(&signature(&s.labels, matching)))
                .map(stamp)
                .collect()
        }
        T_LUNLESS => {
            let rs: HashSet<Labels> = r.iter().map(|s| signature(&s.labels, matching)).collect();
            l.into_iter()
                .filter(|s| !rs.contains(&signature(&s.labels, matching)))
                .map(stamp)
                .collect()
        }
        _ => {
            let ls: HashSet<Labels> = l.iter().map(|s| signature(&s.labels, matching)).collect();
            let mut out: Vec<VectorSample> = l.into_iter().map(stamp).collect();
            out.extend(
                r.into_iter()
                    .filter(|s| !ls.contains(&signature(&s.labels, matching)))
                    .map(stamp),
            );
            out
        }
    }
}

fn vector_vector(
    ev: &mut Evaluator,
    op: u16,
    lhs: Vec<VectorSample>,
    rhs: Vec<VectorSample>,
    b: &BinaryExpr,
    ret_bool: bool,
    t: i64,
) -> Result<Vec<VectorSample>, Error> {
    let card = b
        .modifier
        .as_ref()
        .map(|m| m.card.clone())
        .unwrap_or(VectorMatchCardinality::OneToOne);
    let matching = b.modifier.as_ref().and_then(|m| m.matching.as_ref());
    let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
    let include: Vec<String> = match &card {
        VectorMatchCardinality::ManyToOne(ls) | VectorMatchCardinality::OneToMany(ls) => {
            ls.labels.clone()
        }
        _ => Vec::new(),
    };
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let mut one_side: HashMap<Labels, VectorSample> = HashMap::with_capacity(one.len());
    for s in one {
        let sig = signature(&s.labels, matching);
        if let Some(d) = one_side.get(&sig) {
            let side = if one_to_many { "left" } else { "right" };
            return Err(Error::Execution(format!(
                "found duplicate series for the match group {sig} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                s.labels, d.labels
            )));
        }
        one_side.insert(sig, s);
    }
    let cmp = is_comparison(op);
    let mut matched: HashSet<Labels> = HashSet::new();
    let mut inserted: HashSet<Labels> = HashSet::new();
    let mut out = Vec::new();
    for ms in many {
        let sig = signature(&ms.labels, matching);
        let Some(os) = one_side.get(&sig) else {
            continue;
        };
        let (lv, rv, lh, rh) = if one_to_many {
            (os.v, ms.v, os.h.as_ref(), ms.h.as_ref())
        } else {
            (ms.v, os.v, ms.h.as_ref(), os.h.as_ref())
        };
        if let (Some(a), Some(b)) = (lh, rh) {
            if nh::needs_reconcile(a, b) && matches!(op, T_ADD | T_SUB) {
                ev.info(nh::reconciled_info(if op == T_ADD {
                    "addition"
                } else {
                    "subtraction"
                }));
            }
        }
        let Some((mut val, mut h, mut keep)) = elem_op(op, lv, rv, lh, rh) else {
            ev.info(format!(
                "PromQL info: incompatible sample types encountered for binary operator \"{}\"",
                b_op_name(op)
            ));
            continue;
        };
        let mut labels = (*ms.labels).clone();
        if drops_name(op) || ret_bool {
            labels.remove(METRIC_NAME);
        }
        if matches!(card, VectorMatchCardinality::OneToOne) {
            match matching {
                Some(LabelModifier::Include(ls)) => {
                    labels = Labels::from_sorted(
                        labels
                            .iter()
                            .filter(|x| ls.labels.contains(&x.name))
                            .cloned()
                            .collect(),
                    );
                }
                Some(LabelModifier::Exclude(ls)) => {
                    for n in &ls.labels {
                        labels.remove(n);
                    }
                }
                None => {}
            }
        }
        for n in &include {
            match os.labels.get(n) {
                Some(v) => labels.set(n, v),
                None => labels.remove(n),
            }
        }
        // Cardinality is checked before comparisons filter, as upstream does.
        if matches!(card, VectorMatchCardinality::OneToOne) {
            if !matched.insert(sig) {
                return Err(Error::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                ));
            }
        } else if !inserted.insert(labels.clone()) {
            return Err(Error::Execution(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        if ret_bool {
            val = if keep { 1.0 } else { 0.0 };
            h = None;
            keep = true;
        } else if cmp && h.is_none() {
            val = lv;
        }
        if !keep {
            continue;
        }
        out.push(VectorSample {
            labels: Arc::new(labels),
            t,
            v: val,
            h,
        });
    }
    Ok(out)
}
