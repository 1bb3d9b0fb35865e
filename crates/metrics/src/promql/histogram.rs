//! Native histogram arithmetic and the histogram functions (`histogram_quantile` for classic `le`
//! buckets and native histograms, `histogram_fraction`, `histogram_stdvar`), plus bucket iteration
//! for the JSON encoding.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use common::labels::METRIC_NAME;
use common::Labels;

use super::eval::{kahan_inc, Evaluator, PtrMap};
use super::VectorSample;
use crate::{Error, Histogram, ResetHint, Span};

/// Schema of histograms with custom bucket bounds.
pub(crate) const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// One bucket as the JSON encoding and the quantile code see it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Bucket {
    pub lower: f64,
    pub upper: f64,
    pub lower_inclusive: bool,
    pub upper_inclusive: bool,
    pub count: f64,
}

/// `(index, count)` pairs of a span/bucket encoding.
fn expand(spans: &[Span], buckets: &[f64]) -> Vec<(i32, f64)> {
    let mut out = Vec::with_capacity(buckets.len());
    let mut idx: i32 = 0;
    let mut b = 0;
    for (i, s) in spans.iter().enumerate() {
        idx = if i == 0 {
            s.offset
        } else {
            idx.saturating_add(s.offset)
        };
        for _ in 0..s.length {
            if b >= buckets.len() {
                return out;
            }
            out.push((idx, buckets[b]));
            b += 1;
            idx = idx.saturating_add(1);
        }
    }
    out
}

/// Span/bucket encoding of sorted `(index, count)` pairs, empty buckets dropped.
fn compact(m: &BTreeMap<i32, f64>) -> (Vec<Span>, Vec<f64>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut buckets = Vec::new();
    let mut next: Option<i32> = None;
    let mut base = 0i32;
    for (&i, &c) in m {
        if c == 0.0 {
            continue;
        }
        match next {
            Some(n) if n == i => {
                if let Some(s) = spans.last_mut() {
                    s.length += 1;
                }
            }
            _ => {
                let offset = if spans.is_empty() {
                    i
                } else {
                    i.saturating_sub(base)
                };
                spans.push(Span { offset, length: 1 });
            }
        }
        buckets.push(c);
        next = Some(i.saturating_add(1));
        base = i.saturating_add(1);
    }
    (spans, buckets)
}

fn reduce(idx: i32, from: i32, to: i32) -> i32 {
    if from <= to || from == CUSTOM_BUCKETS_SCHEMA {
        return idx;
    }
    let d = from.saturating_sub(to).min(31) as u32;
    (idx.saturating_sub(1) >> d).saturating_add(1)
}

/// Whether two histograms can be added: both exponential, or both with custom bounds (which are
/// reconciled when they differ, see [`needs_reconcile`]).
pub(crate) fn compatible(a: &Histogram, b: &Histogram) -> bool {
    let (ca, cb) = (
        a.schema == CUSTOM_BUCKETS_SCHEMA,
        b.schema == CUSTOM_BUCKETS_SCHEMA,
    );
    ca == cb
}

/// Warning for histograms that cannot be combined.
pub(crate) const INCOMPATIBLE: &str =
    "PromQL warning: vector contains histograms with incompatible bucket layouts (custom and exponential buckets, or different custom bounds)";

/// Whether two custom-bucket histograms have different bounds (and need reconciling).
pub(crate) fn needs_reconcile(a: &Histogram, b: &Histogram) -> bool {
    a.schema == CUSTOM_BUCKETS_SCHEMA
        && b.schema == CUSTOM_BUCKETS_SCHEMA
        && a.custom_values != b.custom_values
}

/// Re-buckets a custom-bucket histogram onto `bounds` (a subset of its own bounds): each bucket
/// moves into the first bucket whose upper bound is not below its own.
fn remap_custom(h: &Histogram, bounds: &[f64]) -> Histogram {
    let mut m: BTreeMap<i32, f64> = BTreeMap::new();
    for (i, c) in expand(&h.positive_spans, &h.positive_buckets) {
        let upper = usize::try_from(i)
            .ok()
            .and_then(|i| h.custom_values.get(i).copied())
            .unwrap_or(f64::INFINITY);
        let j = bounds.partition_point(|b| *b < upper) as i32;
        *m.entry(j).or_default() += c;
    }
    let (positive_spans, positive_buckets) = compact(&m);
    Histogram {
        positive_spans,
        positive_buckets,
        custom_values: bounds.to_vec(),
        ..h.clone()
    }
}

fn combine(a: &Histogram, b: &Histogram, sign: f64) -> Histogram {
    if needs_reconcile(a, b) {
        // Mismatched custom bounds: reconcile both onto the bounds they share.
        let common: Vec<f64> = a
            .custom_values
            .iter()
            .filter(|x| b.custom_values.contains(x))
            .copied()
            .collect();
        return combine(&remap_custom(a, &common), &remap_custom(b, &common), sign);
    }
    let schema = if a.schema == CUSTOM_BUCKETS_SCHEMA || b.schema == CUSTOM_BUCKETS_SCHEMA {
        a.schema
    } else {
        a.schema.min(b.schema)
    };
    let mut pos: BTreeMap<i32, f64> = BTreeMap::new();
    let mut neg: BTreeMap<i32, f64> = BTreeMap::new();
    for (h, f) in [(a, 1.0), (b, sign)] {
        for (i, c) in expand(&h.positive_spans, &h.positive_buckets) {
            *pos.entry(reduce(i, h.schema, schema)).or_default() += f * c;
        }
        for (i, c) in expand(&h.negative_spans, &h.negative_buckets) {
            *neg.entry(reduce(i, h.schema, schema)).or_default() += f * c;
        }
    }
    let (positive_spans, positive_buckets) = compact(&pos);
    let (negative_spans, negative_buckets) = compact(&neg);
    Histogram {
        schema,
        zero_threshold: a.zero_threshold.max(b.zero_threshold),
        zero_count: a.zero_count + sign * b.zero_count,
        count: a.count + sign * b.count,
        sum: a.sum + sign * b.sum,
        positive_spans,
        positive_buckets,
        negative_spans,
        negative_buckets,
        custom_values: a.custom_values.clone(),
        reset_hint: ResetHint::Unknown,
    }
}

/// `a + b`.
pub(crate) fn add(a: &Histogram, b: &Histogram) -> Histogram {
    combine(a, b, 1.0)
}

/// `a - b`.
pub(crate) fn sub(a: &Histogram, b: &Histogram) -> Histogram {
    let mut h = combine(a, b, -1.0);
    h.reset_hint = ResetHint::Gauge;
    h
}

/// `h * f`.
pub(crate) fn scale(h: &Histogram, f: f64) -> Histogram {
    let mut h = h.clone();
    h.count *= f;
    h.sum *= f;
    h.zero_count *= f;
    h.positive_buckets.iter_mut().for_each(|b| *b *= f);
    h.negative_buckets.iter_mut().for_each(|b| *b *= f);
    if f < 0.0 {
        h.reset_hint = ResetHint::Gauge;
    }
    h
}

/// Marks a histogram as a gauge histogram (results of rate, delta, …).
pub(crate) fn gauge(mut h: Histogram) -> Histogram {
    h.reset_hint = ResetHint::Gauge;
    h
}

/// Whether `curr` (following `prev`) is a counter reset.
pub(crate) fn detect_reset(prev: &Histogram, curr: &Histogram) -> bool {
    // The same sample seen twice (a subquery repeating it through the lookback) is no reset,
    // whatever its hint says.
    if prev == curr {
        return false;
    }
    match curr.reset_hint {
        ResetHint::Yes => return true,
        ResetHint::No | ResetHint::Gauge => return false,
        ResetHint::Unknown => {}
    }
    if curr.count < prev.count || curr.zero_count < prev.zero_count {
        return true;
    }
    if needs_reconcile(prev, curr) {
        let common: Vec<f64> = prev
            .custom_values
            .iter()
            .filter(|x| curr.custom_values.contains(x))
            .copied()
            .collect();
        return detect_reset(&remap_custom(prev, &common), &remap_custom(curr, &common));
    }
    if curr.schema != CUSTOM_BUCKETS_SCHEMA
        && (curr.schema > prev.schema || curr.zero_threshold < prev.zero_threshold)
    {
        return true;
    }
    let schema = curr.schema.min(prev.schema);
    let mut m: BTreeMap<(bool, i32), f64> = BTreeMap::new();
    for (h, f) in [(curr, 1.0), (prev, -1.0)] {
        for (i, c) in expand(&h.positive_spans, &h.positive_buckets) {
            *m.entry((true, reduce(i, h.schema, schema))).or_default() += f * c;
        }
        for (i, c) in expand(&h.negative_spans, &h.negative_buckets) {
            *m.entry((false, reduce(i, h.schema, schema))).or_default() += f * c;
        }
    }
    m.values().any(|d| *d < 0.0)
}

/// Upper bound of positive bucket `idx` under `schema`.
fn upper_bound(idx: i32, h: &Histogram) -> f64 {
    if h.schema == CUSTOM_BUCKETS_SCHEMA {
        return usize::try_from(idx)
            .ok()
            .and_then(|i| h.custom_values.get(i).copied())
            .unwrap_or(f64::INFINITY);
    }
    // Valid schemas are -4..=8; anything else (untrusted input) is clamped so shifts cannot overflow.
    let s = h.schema.clamp(-30, 30);
    if s <= 0 {
        let e = i64::from(idx) << (-s).min(62);
        return 2f64.powi(e.clamp(-2000, 2000) as i32);
    }
    let frac = idx & ((1 << s) - 1);
    let exp = idx >> s;
    (f64::from(frac) / f64::from(1 << s)).exp2() * 2f64.powi(exp)
}

/// Every bucket, lowest first: negative, zero, positive (empty ones included).
pub(crate) fn buckets(h: &Histogram) -> Vec<Bucket> {
    let mut out = Vec::new();
    let custom = h.schema == CUSTOM_BUCKETS_SCHEMA;
    let mut neg = expand(&h.negative_spans, &h.negative_buckets);
    neg.reverse();
    for (i, c) in neg {
        out.push(Bucket {
            lower: -upper_bound(i, h),
            upper: -upper_bound(i - 1, h),
            lower_inclusive: true,
            upper_inclusive: false,
            count: c,
        });
    }
    if !custom && (h.zero_threshold != 0.0 || h.zero_count != 0.0) {
        out.push(Bucket {
            lower: -h.zero_threshold,
            upper: h.zero_threshold,
            lower_inclusive: true,
            upper_inclusive: true,
            count: h.zero_count,
        });
    }
    for (i, c) in expand(&h.positive_spans, &h.positive_buckets) {
        let lower = if custom {
            if i == 0 {
                f64::NEG_INFINITY
            } else {
                upper_bound(i - 1, h)
            }
        } else {
            upper_bound(i - 1, h)
        };
        out.push(Bucket {
            lower,
            upper: upper_bound(i, h),
            lower_inclusive: false,
            upper_inclusive: true,
            count: c,
        });
    }
    out
}

/// Quantile of a native histogram (exponential interpolation in standard buckets, linear in the
/// zero bucket and custom buckets). Like Prometheus, quantiles from 0.5 up are found by walking
/// down from the highest bucket, unless NaN observations (a NaN sum) make the top unreliable.
pub(crate) fn native_quantile(q: f64, h: &Histogram) -> f64 {
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if h.count == 0.0 || q.is_nan() {
        return f64::NAN;
    }
    let custom = h.schema == CUSTOM_BUCKETS_SCHEMA;
    let forward = h.sum.is_nan() || q < 0.5;
    let mut all = buckets(h);
    let mut rank = if forward {
        q * h.count
    } else {
        (1.0 - q) * h.count
    };
    if !forward {
        all.reverse();
    }
    let mut count = 0.0;
    let mut bucket = None;
    for b in all {
        if b.count == 0.0 {
            continue;
        }
        count += b.count;
        bucket = Some(b);
        if count >= rank {
            break;
        }
    }
    let Some(mut b) = bucket else { return f64::NAN };
    if !custom && b.lower < 0.0 && b.upper > 0.0 {
        if h.negative_buckets.is_empty() && !h.positive_buckets.is_empty() {
            b.lower = 0.0;
        } else if h.positive_buckets.is_empty() && !h.negative_buckets.is_empty() {
            b.upper = 0.0;
        }
    } else if custom {
        if b.lower == f64::NEG_INFINITY {
            if b.upper <= 0.0 {
                return b.upper;
            }
            b.lower = 0.0;
        } else if b.upper == f64::INFINITY {
            return b.lower;
        }
    }
    if count > h.count {
        count = h.count;
    }
    if count < rank {
        return if h.sum.is_nan() { f64::NAN } else { b.upper };
    }
    if forward {
        rank -= count - b.count;
    } else {
        rank = count - rank;
    }
    let frac = rank / b.count;
    if custom || (b.lower <= 0.0 && b.upper >= 0.0) {
        return b.lower + (b.upper - b.lower) * frac;
    }
    let (ll, lu) = (b.lower.abs().log2(), b.upper.abs().log2());
    if b.lower > 0.0 {
        (ll + (lu - ll) * frac).exp2()
    } else {
        -(lu + (ll - lu) * (1.0 - frac)).exp2()
    }
}

/// Estimated fraction of observations between `lo` and `hi`.
pub(crate) fn fraction(lo: f64, hi: f64, h: &Histogram) -> f64 {
    if h.count == 0.0 || lo.is_nan() || hi.is_nan() {
        return f64::NAN;
    }
    if lo >= hi {
        return 0.0;
    }
    let custom = h.schema == CUSTOM_BUCKETS_SCHEMA;
    let (mut rank, mut lo_rank, mut hi_rank) = (0.0, 0.0, 0.0);
    let (mut lo_set, mut hi_set) = (false, false);
    let has_neg = !h.negative_buckets.is_empty();
    let has_pos = !h.positive_buckets.is_empty();
    for mut b in buckets(h) {
        let zero = b.lower <= 0.0 && b.upper >= 0.0;
        if zero {
            if !has_neg && has_pos {
                b.lower = 0.0;
            } else if !has_pos && has_neg {
                b.upper = 0.0;
            }
        }
        let interp = |v: f64| -> f64 {
            if b.lower == f64::NEG_INFINITY {
                return b.count;
            }
            if custom || zero {
                return rank + b.count * (v - b.lower) / (b.upper - b.lower);
            }
            let (ll, lu, lv) = (b.lower.abs().log2(), b.upper.abs().log2(), v.abs().log2());
            let f = if v > 0.0 {
                (lv - ll) / (lu - ll)
            } else {
                1.0 - (lv - lu) / (ll - lu)
            };
            rank + b.count * f
        };
        if !lo_set && b.lower >= lo {
            lo_rank = rank;
            lo_set = true;
        }
        if !hi_set && b.lower >= hi {
            hi_rank = rank;
            hi_set = true;
        }
        if lo_set && hi_set {
            break;
        }
        if !lo_set && b.lower < lo && b.upper > lo {
            lo_rank = interp(lo);
            lo_set = true;
        }
        if !hi_set && b.lower < hi && b.upper > hi {
            hi_rank = interp(hi);
            hi_set = true;
        }
        if lo_set && hi_set {
            break;
        }
        rank += b.count;
    }
    // NaN observations are in the count but in no bucket: they belong to no fraction.
    let count = if h.sum.is_nan() {
        buckets(h).iter().map(|b| b.count).sum::<f64>().min(h.count)
    } else {
        h.count
    };
    if !lo_set || lo_rank > count {
        lo_rank = count;
    }
    if !hi_set || hi_rank > count {
        hi_rank = count;
    }
    (hi_rank - lo_rank) / h.count
}

/// Estimated variance of the observations (bucket midpoints: geometric for exponential buckets).
pub(crate) fn stdvar(h: &Histogram) -> f64 {
    let mean = h.sum / h.count;
    let custom = h.schema == CUSTOM_BUCKETS_SCHEMA;
    let (mut var, mut c) = (0.0, 0.0);
    for b in buckets(h) {
        if b.count == 0.0 {
            continue;
        }
        let val = if custom {
            (b.upper + b.lower) / 2.0
        } else if b.lower <= 0.0 && b.upper >= 0.0 {
            0.0
        } else {
            let v = (b.upper * b.lower).sqrt();
            if b.upper < 0.0 {
                -v
            } else {
                v
            }
        };
        let d = val - mean;
        (var, c) = kahan_inc(b.count * d * d, var, c);
    }
    (var + c) / h.count
}

fn almost_equal(a: f64, b: f64, eps: f64) -> bool {
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < eps * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < eps
}

/// Quantile over classic `le` buckets `(upper bound, cumulative count)`; returns the value and
/// whether monotonicity had to be forced.
pub(crate) fn bucket_quantile(q: f64, mut b: Vec<(f64, f64)>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    if b.last().is_none_or(|l| l.0 != f64::INFINITY) {
        return (f64::NAN, false);
    }
    // Coalesce buckets with the same bound (e.g. le="1" and le="1.0").
    let mut c: Vec<(f64, f64)> = Vec::with_capacity(b.len());
    for (u, n) in b {
        match c.last_mut() {
            Some(l) if l.0 == u => l.1 += n,
            _ => c.push((u, n)),
        }
    }
    let mut forced = false;
    let mut prev = c[0].1;
    for x in c.iter_mut().skip(1) {
        let cur = x.1;
        if cur == prev {
            continue;
        }
        if almost_equal(prev, cur, 1e-12) {
            x.1 = prev;
            continue;
        }
        if cur < prev {
            x.1 = prev;
            forced = true;
            continue;
        }
        prev = cur;
    }
    if c.len() < 2 {
        return (f64::NAN, forced);
    }
    let obs = c[c.len() - 1].1;
    if obs == 0.0 {
        return (f64::NAN, forced);
    }
    let mut rank = q * obs;
    let i = c[..c.len() - 1].partition_point(|x| x.1 < rank);
    if i == c.len() - 1 {
        return (c[c.len() - 2].0, forced);
    }
    if i == 0 && c[0].0 <= 0.0 {
        return (c[0].0, forced);
    }
    let (mut start, end, mut count) = (0.0, c[i].0, c[i].1);
    if i > 0 {
        start = c[i - 1].0;
        count -= c[i - 1].1;
        rank -= c[i - 1].1;
    }
    (start + (end - start) * (rank / count), forced)
}

/// Fraction of observations between `lo` and `hi` estimated from classic `le` buckets
/// `(upper bound, cumulative count)`, interpolating linearly inside buckets.
pub(crate) fn bucket_fraction(lo: f64, hi: f64, mut b: Vec<(f64, f64)>) -> f64 {
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    if b.last().is_none_or(|l| l.0 != f64::INFINITY) {
        return f64::NAN;
    }
    let mut c: Vec<(f64, f64)> = Vec::with_capacity(b.len());
    for (u, n) in b {
        match c.last_mut() {
            Some(l) if l.0 == u => l.1 += n,
            _ => c.push((u, n)),
        }
    }
    let count = c[c.len() - 1].1;
    if count == 0.0 || lo.is_nan() || hi.is_nan() {
        return f64::NAN;
    }
    if lo >= hi {
        return 0.0;
    }
    let (mut rank, mut lo_rank, mut hi_rank) = (0.0, 0.0, 0.0);
    let (mut lo_set, mut hi_set) = (false, false);
    // Positive buckets only unless the first bound is not above zero.
    let mut lower = if c[0].0 <= 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    for (i, &(upper, n)) in c.iter().enumerate() {
        if i > 0 {
            lower = c[i - 1].0;
        }
        let interp = |v: f64| {
            if lower == f64::NEG_INFINITY {
                n
            } else {
                rank + (n - rank) * (v - lower) / (upper - lower)
            }
        };
        if !lo_set && lower >= lo {
            lo_rank = rank;
            lo_set = true;
        }
        if !hi_set && lower >= hi {
            hi_rank = rank;
            hi_set = true;
        }
        if lo_set && hi_set {
            break;
        }
        if !lo_set && lower < lo && upper > lo {
            lo_rank = interp(lo);
            lo_set = true;
        }
        if !hi_set && lower < hi && upper > hi {
            hi_rank = interp(hi);
            hi_set = true;
        }
        if lo_set && hi_set {
            break;
        }
        rank = n;
    }
    if !lo_set || lo_rank > count {
        lo_rank = count;
    }
    if !hi_set || hi_rank > count {
        hi_rank = count;
    }
    (hi_rank - lo_rank) / count
}

/// Classic buckets of one series group: `(output labels, metric name, (upper bound, count) pairs)`.
type ClassicGroup = (Arc<Labels>, String, Vec<(f64, f64)>);

/// One classic-bucket group of a call node: its key (labels without `le`, name kept), metric
/// name and output labels (key without the name).
struct BucketGroup {
    key: Labels,
    name: String,
    out: Arc<Labels>,
}

/// Classic-bucket grouping of one `histogram_quantile`/`histogram_fraction` call node,
/// remembered across the steps of a query: a bucket series seen before (by the address of its
/// shared label set) maps straight to its group and parsed `le`.
#[derive(Default)]
pub(crate) struct BucketCache {
    /// Address of a shared label set → (that set, kept so the address stays taken; its group and
    /// upper bound, `None` for a missing or malformed `le`).
    by_ptr: PtrMap<Option<(usize, f64)>>,
    by_key: HashMap<Labels, usize>,
    groups: Vec<BucketGroup>,
}

impl BucketCache {
    fn lookup(&mut self, l: &Arc<Labels>) -> Option<(usize, f64)> {
        let ptr = Arc::as_ptr(l) as usize;
        if let Some((_, e)) = self.by_ptr.get(&ptr) {
            return *e;
        }
        let le = l.get("le").unwrap_or("");
        let e = parse_go_float(le).filter(|_| !le.is_empty()).map(|ub| {
            let mut key = (**l).clone();
            key.remove("le");
            let g = match self.by_key.get(&key) {
                Some(&g) => g,
                None => {
                    let mut out = key.clone();
                    out.remove(METRIC_NAME);
                    self.groups.push(BucketGroup {
                        key: key.clone(),
                        name: l.get(METRIC_NAME).unwrap_or("").to_string(),
                        out: Arc::new(out),
                    });
                    self.by_key.insert(key, self.groups.len() - 1);
                    self.groups.len() - 1
                }
            };
            (g, ub)
        });
        // Only shared sets recur by address; a unique one dies with its element.
        if Arc::strong_count(l) > 1 {
            self.by_ptr.insert(ptr, (l.clone(), e));
        }
        e
    }
}

/// Groups classic bucket series by their labels without `le` (the metric name is kept, so that
/// buckets of different metrics never mix), in the order of those keys; `id` names the call
/// node whose [`BucketCache`] is used.
fn classic_groups(ev: &mut Evaluator, id: usize, v: &[VectorSample]) -> Vec<ClassicGroup> {
    let mut cache = ev.bucket_groups.remove(&id).unwrap_or_default();
    let mut slot: Vec<usize> = Vec::new();
    let mut found: Vec<(usize, Vec<(f64, f64)>)> = Vec::new();
    for s in v.iter().filter(|s| s.h.is_none()) {
        let Some((g, ub)) = cache.lookup(&s.labels) else {
            let name = s.labels.get(METRIC_NAME).unwrap_or("");
            let le = s.labels.get("le").unwrap_or("");
            ev.warn(format!(
                "PromQL warning: bucket label \"le\" is missing or has a malformed value of \"{le}\" for metric name \"{name}\""
            ));
            continue;
        };
        if slot.len() <= g {
            slot.resize(cache.groups.len(), usize::MAX);
        }
        if slot[g] == usize::MAX {
            slot[g] = found.len();
            found.push((g, Vec::new()));
        }
        found[slot[g]].1.push((ub, s.v));
    }
    found.sort_by(|a, b| cache.groups[a.0].key.cmp(&cache.groups[b.0].key));
    let out = found
        .into_iter()
        .map(|(g, b)| {
            let g = &cache.groups[g];
            (g.out.clone(), g.name.clone(), b)
        })
        .collect();
    ev.bucket_groups.insert(id, cache);
    out
}

/// `histogram_fraction(lo, hi, v)` over native histograms and classic bucket series.
pub(crate) fn histogram_fraction(
    ev: &mut Evaluator,
    id: usize,
    lo: f64,
    hi: f64,
    v: Vec<VectorSample>,
    t: i64,
) -> Vec<VectorSample> {
    let mut out = Vec::new();
    for s in &v {
        if let Some(h) = &s.h {
            let mut labels = s.labels.clone();
            super::eval::drop_name(&mut labels);
            if has_nan_observations(h) {
                ev.info(
                    "PromQL info: input to histogram_fraction has NaN observations, which are excluded from all fractions"
                        .into(),
                );
            }
            out.push(VectorSample {
                labels,
                t,
                v: fraction(lo, hi, h),
                h: None,
            });
        }
    }
    let native: Vec<Arc<Labels>> = out.iter().map(|o| o.labels.clone()).collect();
    for (labels, name, b) in classic_groups(ev, id, &v) {
        if native.iter().any(|n| **n == *labels) {
            ev.warn(mix_classic_native(&name));
            out.retain(|o| *o.labels != *labels);
            continue;
        }
        out.push(VectorSample {
            labels,
            t,
            v: bucket_fraction(lo, hi, b),
            h: None,
        });
    }
    out
}

fn mix_classic_native(name: &str) -> String {
    format!("PromQL warning: vector contains a mix of classic and native histograms for metric name \"{name}\"")
}

/// `histogram_quantile(q, v)` over classic bucket series and native histograms alike.
pub(crate) fn histogram_quantile(
    ev: &mut Evaluator,
    id: usize,
    q: f64,
    v: Vec<VectorSample>,
    t: i64,
) -> Result<Vec<VectorSample>, Error> {
    if !(0.0..=1.0).contains(&q) {
        ev.warn(format!(
            "PromQL warning: quantile value should be between 0 and 1, got {}",
            super::format_float(q)
        ));
    }
    let mut out = Vec::new();
    for s in &v {
        if let Some(h) = &s.h {
            let mut labels = s.labels.clone();
            super::eval::drop_name(&mut labels);
            let r = native_quantile(q, h);
            if has_nan_observations(h) {
                ev.info(format!(
                    "PromQL info: input to histogram_quantile has NaN observations, result is {}",
                    if r.is_nan() { "NaN" } else { "skewed higher" }
                ));
            }
            out.push(VectorSample {
                labels,
                t,
                v: r,
                h: None,
            });
        }
    }
    let native: Vec<Arc<Labels>> = out.iter().map(|o| o.labels.clone()).collect();
    for (labels, name, b) in classic_groups(ev, id, &v) {
        if native.iter().any(|n| **n == *labels) {
            ev.warn(format!(
                "PromQL warning: vector contains a mix of classic and native histograms for metric name \"{name}\""
            ));
            out.retain(|o| *o.labels != *labels);
            continue;
        }
        let (v, forced) = bucket_quantile(q, b);
        if forced {
            ev.info(format!(
                "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name \"{name}\""
            ));
        }
        out.push(VectorSample {
            labels,
            t,
            v,
            h: None,
        });
    }
    Ok(out)
}

/// Parses a float the way Go's `strconv.ParseFloat` accepts label values (`+Inf`, `1e3`, …).
pub(crate) fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.trim();
    match t.to_ascii_lowercase().as_str() {
        "+inf" | "inf" | "infinity" | "+infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if t != s {
        return None;
    }
    t.parse::<f64>().ok()
}

pub(crate) use common::gofmt::format_g as go_g;

/// Go's `FloatHistogram.String()`: `{count:C, sum:S, [lo,hi):n, …}` (non-empty buckets only).
pub(crate) fn go_string(h: &Histogram) -> String {
    let mut s = format!("{{count:{}, sum:{}", go_g(h.count), go_g(h.sum));
    for b in buckets(h) {
        let zero = h.schema != CUSTOM_BUCKETS_SCHEMA && b.lower_inclusive && b.upper_inclusive;
        if b.count == 0.0 && !zero || zero && h.zero_count == 0.0 {
            continue;
        }
        s.push_str(&format!(
            ", {}{},{}{}:{}",
            if b.lower_inclusive { '[' } else { '(' },
            go_g(b.lower),
            go_g(b.upper),
            if b.upper_inclusive { ']' } else { ')' },
            go_g(b.count)
        ));
    }
    s.push('}');
    s
}

/// Sum of histograms with compensated (Kahan) summation of `sum` and `count`, so that huge
/// values cancelling out do not swallow small ones. Callers check [`compatible`] first.
pub(crate) fn sum_all<'a>(hs: impl Iterator<Item = &'a Histogram>) -> Option<Histogram> {
    let mut acc: Option<Histogram> = None;
    let (mut s, mut sc, mut c, mut cc) = (0.0, 0.0, 0.0, 0.0);
    for h in hs {
        (s, sc) = kahan_inc(h.sum, s, sc);
        (c, cc) = kahan_inc(h.count, c, cc);
        acc = Some(match acc {
            None => h.clone(),
            Some(a) => add(&a, h),
        });
    }
    acc.map(|mut a| {
        a.sum = s + sc;
        a.count = c + cc;
        a
    })
}

/// Info annotation when custom buckets had to be reconciled (`what`: aggregation, subtraction).
pub(crate) fn reconciled_info(what: &str) -> String {
    format!("PromQL info: mismatched custom buckets were reconciled during {what}")
}

/// Warning for a mix of exponential and custom-bucket histograms.
pub(crate) fn mixed_schemas_warning(metric: &str) -> String {
    format!(
        "PromQL warning: vector contains a mix of histograms with exponential and custom buckets schemas for metric name \"{metric}\""
    )
}

/// NaN observations show as a NaN sum and a count above the buckets' total.
fn has_nan_observations(h: &Histogram) -> bool {
    h.sum.is_nan() && buckets(h).iter().map(|b| b.count).sum::<f64>() < h.count
}

/// `h / 0`: like upstream, all observations collapse into the zero bucket with an infinite (or,
/// for an empty histogram, NaN) count.
pub(crate) fn div_by_zero(h: &Histogram) -> Histogram {
    Histogram {
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: h.count / 0.0,
        count: h.count / 0.0,
        sum: h.sum / 0.0,
        custom_values: h.custom_values.clone(),
        reset_hint: ResetHint::Gauge,
        ..Default::default()
    }
}
