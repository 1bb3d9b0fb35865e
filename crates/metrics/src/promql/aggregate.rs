//! Aggregation operators (`sum`, `avg`, `topk`, `count_values`, …) with `by`/`without`.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use common::labels::METRIC_NAME;
use common::{Label, Labels};
use promql_parser::parser::token::*;
use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::eval::{kahan_inc, Evaluator, PtrMap, Val};
use super::functions::{kahan_mean, quantile, variance};
use super::histogram as nh;
use super::VectorSample;
use crate::Error;

/// The label set of the group `l` belongs to.
fn group_labels(l: &Labels, m: &Option<LabelModifier>) -> Labels {
    match m {
        None => Labels::default(),
        Some(LabelModifier::Include(ls)) => Labels::from_sorted({
            let mut v: Vec<Label> = l
                .iter()
                .filter(|x| ls.labels.contains(&x.name))
                .cloned()
                .collect();
            v.dedup_by(|a, b| a.name == b.name);
            v
        }),
        Some(LabelModifier::Exclude(ls)) => Labels::from_sorted(
            l.iter()
                .filter(|x| x.name != METRIC_NAME && !ls.labels.contains(&x.name))
                .cloned()
                .collect(),
        ),
    }
}

/// Whether `x` is part of the grouping key under `m` (the allocation-free twin of
/// [`group_labels`]).
fn in_group(x: &Label, m: &Option<LabelModifier>) -> bool {
    match m {
        None => false,
        Some(LabelModifier::Include(ls)) => ls.labels.contains(&x.name),
        Some(LabelModifier::Exclude(ls)) => x.name != METRIC_NAME && !ls.labels.contains(&x.name),
    }
}

/// FNV-1a over the grouping key of `l`; equal keys hash equally.
fn group_hash(l: &Labels, m: &Option<LabelModifier>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for x in l.iter().filter(|x| in_group(x, m)) {
        for b in x
            .name
            .bytes()
            .chain([0xff])
            .chain(x.value.bytes())
            .chain([0xfe])
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The groups of one aggregation node, remembered across the steps of a query: label sets seen
/// before (by the address of their shared `Arc`) map straight to their group, so a step neither
/// hashes nor compares labels for them, and each group's label set is built once.
#[derive(Default)]
pub(crate) struct GroupCache {
    /// Address of a shared input label set → (that set, kept so the address stays taken; group).
    by_ptr: PtrMap<usize>,
    /// Group key hash → groups with that hash.
    by_hash: HashMap<u64, Vec<usize>>,
    /// Label set of each group.
    groups: Vec<Arc<Labels>>,
}

impl GroupCache {
    fn group_of(&mut self, l: &Arc<Labels>, m: &Option<LabelModifier>) -> usize {
        let key = Arc::as_ptr(l) as usize;
        if let Some((_, g)) = self.by_ptr.get(&key) {
            return *g;
        }
        let cands = self.by_hash.entry(group_hash(l, m)).or_default();
        let groups = &mut self.groups;
        let found = cands
            .iter()
            .copied()
            .find(|&g| groups[g].iter().eq(l.iter().filter(|x| in_group(x, m))));
        let g = match found {
            Some(g) => g,
            None => {
                groups.push(Arc::new(group_labels(l, m)));
                cands.push(groups.len() - 1);
                groups.len() - 1
            }
        };
        // Only shared sets recur by address; a unique one dies with its element.
        if Arc::strong_count(l) > 1 {
            self.by_ptr.insert(key, (l.clone(), g));
        }
        g
    }
}

fn to_k(v: f64) -> Result<i64, Error> {
    if v.is_nan() || !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&v) {
        return Err(Error::Execution(format!(
            "Scalar value {} overflows int64",
            super::format_float(v)
        )));
    }
    Ok(v as i64)
}

/// Evaluates an aggregation at `t`.
pub(crate) fn eval(ev: &mut Evaluator, a: &AggregateExpr, t: i64) -> Result<Val, Error> {
    let op = a.op.id();
    let mut fparam = 0.0;
    let mut sparam = String::new();
    if let Some(p) = &a.param {
        if op == T_COUNT_VALUES {
            sparam = ev.eval_string(p, t)?;
        } else {
            fparam = ev.eval_scalar(p, t)?;
        }
    }
    let input = ev.eval_vector(&a.expr, t)?;
    if op == T_COUNT_VALUES && sparam.is_empty() {
        return Err(Error::Execution(format!("invalid label name {sparam:?}")));
    }
    // Groups in order of first appearance at this step, found through the node's cache (this
    // runs for every element at every step of a range query).
    let cache = ev
        .agg_groups
        .entry(a as *const AggregateExpr as usize)
        .or_default();
    let mut slot: Vec<usize> = Vec::new();
    let mut groups: Vec<(Arc<Labels>, Vec<VectorSample>)> = Vec::new();
    for s in input {
        let g = cache.group_of(&s.labels, &a.modifier);
        if slot.len() <= g {
            slot.resize(cache.groups.len(), usize::MAX);
        }
        if slot[g] == usize::MAX {
            slot[g] = groups.len();
            groups.push((cache.groups[g].clone(), Vec::new()));
        }
        groups[slot[g]].1.push(s);
    }
    let mut out = Vec::new();
    match op {
        T_TOPK | T_BOTTOMK | T_LIMITK => {
            let k = to_k(fparam)?;
            if k < 1 {
                return Ok(Val::Vector(out));
            }
            let k = usize::try_from(k).unwrap_or(usize::MAX);
            for (_, mut members) in groups {
                if op == T_LIMITK {
                    out.extend(members.into_iter().take(k).map(|mut s| {
                        s.t = t;
                        s
                    }));
                    continue;
                }
                let before = members.len();
                members.retain(|s| s.h.is_none());
                if members.len() != before {
                    ev.info(format!(
                        "PromQL info: ignored histogram in {} aggregation",
                        if op == T_TOPK { "topk" } else { "bottomk" }
                    ));
                }
                let top = op == T_TOPK;
                members.sort_by(|x, y| match (x.v.is_nan(), y.v.is_nan()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    _ if top => y.v.partial_cmp(&x.v).unwrap_or(Ordering::Equal),
                    _ => x.v.partial_cmp(&y.v).unwrap_or(Ordering::Equal),
                });
                out.extend(members.into_iter().take(k).map(|mut s| {
                    s.t = t;
                    s
                }));
            }
            return Ok(Val::Vector(out));
        }
        T_LIMIT_RATIO => {
            let mut r = fparam;
            if r.is_nan() {
                return Err(Error::Execution("Ratio value NaN is not valid".into()));
            }
            if !(-1.0..=1.0).contains(&r) {
                ev.warn(format!(
                    "PromQL warning: ratio value should be between -1 and 1, got {}, capping to {}",
                    super::format_float(r),
                    if r < 0.0 { -1 } else { 1 }
                ));
                r = r.clamp(-1.0, 1.0);
            }
            for (_, members) in groups {
                for mut s in members {
                    let off = prometheus_labels_hash(&s.labels) as f64 / u64::MAX as f64;
                    let keep = if r >= 0.0 { off < r } else { off >= 1.0 + r };
                    if keep {
                        s.t = t;
                        out.push(s);
                    }
                }
            }
            return Ok(Val::Vector(out));
        }
        T_COUNT_VALUES => {
            // Counted by the final label set, so overwriting a grouping label merges groups.
            let mut counts: Vec<(Labels, f64)> = Vec::new();
            let mut at: HashMap<Labels, usize> = HashMap::new();
            for (g, members) in groups {
                for s in members {
                    let key = match &s.h {
                        Some(h) => nh::go_string(h),
                        None => super::format_float(s.v),
                    };
                    let mut l = (*g).clone();
                    l.set(&sparam, &key);
                    match at.get(&l) {
                        Some(&i) => counts[i].1 += 1.0,
                        None => {
                            at.insert(l.clone(), counts.len());
                            counts.push((l, 1.0));
                        }
                    }
                }
            }
            out.extend(counts.into_iter().map(|(labels, v)| VectorSample {
                labels: Arc::new(labels),
                t,
                v,
                h: None,
            }));
            return Ok(Val::Vector(out));
        }
        _ => {}
    }
    if op == T_QUANTILE && !(0.0..=1.0).contains(&fparam) {
        ev.warn(format!(
            "PromQL warning: quantile value should be between 0 and 1, got {}",
            super::format_float(fparam)
        ));
    }
    for (g, members) in groups {
        let n_hist = members.iter().filter(|s| s.h.is_some()).count();
        let n_float = members.len() - n_hist;
        let value = |v: f64| VectorSample {
            labels: g.clone(),
            t,
            v,
            h: None,
        };
        match op {
            T_COUNT => out.push(value(members.len() as f64)),
            T_GROUP => out.push(value(1.0)),
            T_SUM | T_AVG => {
                if n_hist > 0 && n_float > 0 {
                    let name = members[0].labels.get(METRIC_NAME).unwrap_or("").to_string();
                    ev.warn(format!(
                        "PromQL warning: encountered a mix of histograms and floats for metric name \"{name}\""
                    ));
                    continue;
                }
                if n_hist > 0 {
                    let hs: Vec<&crate::Histogram> =
                        members.iter().filter_map(|s| s.h.as_deref()).collect();
                    if hs.windows(2).any(|w| !nh::compatible(w[0], w[1])) {
                        ev.warn(nh::INCOMPATIBLE.into());
                        continue;
                    }
                    if hs.windows(2).any(|w| nh::needs_reconcile(w[0], w[1])) {
                        ev.info(nh::reconciled_info("aggregation"));
                    }
                    let acc = nh::sum_all(hs.iter().copied());
                    let mut h = acc.unwrap_or_default();
                    if op == T_AVG {
                        h = nh::scale(&h, 1.0 / n_hist as f64);
                    }
                    let mut s = value(0.0);
                    s.h = Some(Arc::new(h));
                    out.push(s);
                    continue;
                }
                let vals = members.iter().map(|s| s.v);
                let v = if op == T_SUM {
                    let (mut sum, mut c) = (0.0, 0.0);
                    for x in vals {
                        (sum, c) = kahan_inc(x, sum, c);
                    }
                    sum + c
                } else {
                    kahan_mean(vals)
                };
                out.push(value(v));
            }
            _ => {
                if n_hist > 0 {
                    let name = match op {
                        T_MIN => "min",
                        T_MAX => "max",
                        T_STDDEV => "stddev",
                        T_STDVAR => "stdvar",
                        _ => "quantile",
                    };
                    ev.info(format!(
                        "PromQL info: ignored histogram in {name} aggregation"
                    ));
                }
                let mut vals: Vec<f64> = members
                    .iter()
                    .filter(|s| s.h.is_none())
                    .map(|s| s.v)
                    .collect();
                if vals.is_empty() {
                    continue;
                }
                let v = match op {
                    T_MIN | T_MAX => {
                        let mut r = vals[0];
                        for &x in &vals {
                            let better = if op == T_MAX { r < x } else { r > x };
                            if better || r.is_nan() {
                                r = x;
                            }
                        }
                        r
                    }
                    T_STDDEV => variance(vals.into_iter()).sqrt(),
                    T_STDVAR => variance(vals.into_iter()),
                    T_QUANTILE => quantile(fparam, &mut vals),
                    _ => {
                        return Err(Error::Execution(format!(
                            "unsupported aggregation {}",
                            a.op
                        )))
                    }
                };
                out.push(value(v));
            }
        }
    }
    Ok(Val::Vector(out))
}

/// Prometheus' `labels.Hash()`: xxHash64 (seed 0) over `name 0xff value 0xff …`. `limit_ratio`
/// samples by it, so the same series are picked as upstream would pick.
pub(crate) fn prometheus_labels_hash(l: &Labels) -> u64 {
    let mut buf = Vec::with_capacity(256);
    for x in l {
        buf.extend_from_slice(x.name.as_bytes());
        buf.push(0xff);
        buf.extend_from_slice(x.value.as_bytes());
        buf.push(0xff);
    }
    xxh64(&buf)
}

const P1: u64 = 11_400_714_785_074_694_791;
const P2: u64 = 14_029_467_366_897_019_727;
const P3: u64 = 1_609_587_929_392_839_161;
const P4: u64 = 9_650_029_242_287_828_579;
const P5: u64 = 2_870_177_450_012_600_261;

fn xxh_round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn xxh_merge(acc: u64, val: u64) -> u64 {
    (acc ^ xxh_round(0, val)).wrapping_mul(P1).wrapping_add(P4)
}

fn read_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// XXH64 with seed 0 (the variant Go's `cespare/xxhash` computes).
pub(crate) fn xxh64(data: &[u8]) -> u64 {
    let len = data.len() as u64;
    let mut rest = data;
    let mut h = if data.len() >= 32 {
        let (mut v1, mut v2, mut v3, mut v4) =
            (P1.wrapping_add(P2), P2, 0u64, 0u64.wrapping_sub(P1));
        while rest.len() >= 32 {
            v1 = xxh_round(v1, read_u64(&rest[0..]));
            v2 = xxh_round(v2, read_u64(&rest[8..]));
            v3 = xxh_round(v3, read_u64(&rest[16..]));
            v4 = xxh_round(v4, read_u64(&rest[24..]));
            rest = &rest[32..];
        }
        let mut h = v1
            .rotate_left(1)
            .wrapping_add(v2.rotate_left(7))
            .wrapping_add(v3.rotate_left(12))
            .wrapping_add(v4.rotate_left(18));
        for v in [v1, v2, v3, v4] {
            h = xxh_merge(h, v);
        }
        h
    } else {
        P5
    };
    h = h.wrapping_add(len);
    while rest.len() >= 8 {
        h ^= xxh_round(0, read_u64(rest));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        let k = u64::from(u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]));
        h ^= k.wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = &rest[4..];
    }
    for &b in rest {
        h ^= u64::from(b).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh64_reference_vectors() {
        // Reference values from libxxhash.
        assert_eq!(xxh64(b""), 0xef46_db37_51d8_e999);
        assert_eq!(xxh64(b"a"), 0xd24e_c4f1_a98c_6e5b);
        assert_eq!(xxh64(b"abc"), 0x44bc_2cf5_ad77_0999);
        let all: Vec<u8> = (0..100).collect();
        assert_eq!(xxh64(&all), 0x6ac1_e580_3216_6597);
        let l = Labels::from_pairs([("__name__", "cpu"), ("job", "a")]);
        assert_eq!(prometheus_labels_hash(&l), 0xad21_dc58_669e_2f68);
    }
}
