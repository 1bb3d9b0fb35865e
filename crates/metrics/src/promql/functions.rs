//! PromQL functions: the rate family, `*_over_time`, math, label, time and sort functions.
//!
//! Written from the Prometheus function documentation; numerical details (Kahan summation,
//! extrapolation thresholds, incremental means on overflow) follow the documented behaviour and the
//! expected values of the upstream test corpus.

use std::cmp::Ordering;
use std::sync::Arc;

use common::labels::METRIC_NAME;
use common::Labels;
use promql_parser::parser::{Call, Expr};

use super::eval::{drop_name, kahan_inc, Evaluator, Val, Window};
use super::histogram as nh;
use super::VectorSample;
use crate::{Error, Histogram, Sample};

/// Dispatches a function call.
pub(crate) fn call(ev: &mut Evaluator, c: &Call, t: i64) -> Result<Val, Error> {
    let args: Vec<&Expr> = c.args.args.iter().map(|b| b.as_ref()).collect();
    let name = c.func.name;
    match name {
        "time" => Ok(Val::Scalar(t as f64 / 1000.0)),
        "pi" => Ok(Val::Scalar(std::f64::consts::PI)),
        "start" => Ok(Val::Scalar(ev.start as f64 / 1000.0)),
        "end" => Ok(Val::Scalar(ev.end as f64 / 1000.0)),
        "range" => Ok(Val::Scalar((ev.end - ev.start) as f64 / 1000.0)),
        "step" => Ok(Val::Scalar(ev.step as f64 / 1000.0)),
        "max_of" | "min_of" => {
            let a = ev.eval_scalar(args[0], t)?;
            let b = ev.eval_scalar(args[1], t)?;
            Ok(Val::Scalar(if name == "max_of" {
                go_max(a, b)
            } else {
                go_min(a, b)
            }))
        }
        "vector" => {
            let v = ev.eval_scalar(args[0], t)?;
            Ok(Val::Vector(vec![VectorSample {
                labels: Arc::new(Labels::default()),
                t,
                v,
                h: None,
            }]))
        }
        "scalar" => {
            let v = ev.eval_vector(args[0], t)?;
            // Only float elements count; histograms are ignored.
            let mut floats = v.iter().filter(|s| s.h.is_none());
            Ok(Val::Scalar(match (floats.next(), floats.next()) {
                (Some(s), None) => s.v,
                _ => f64::NAN,
            }))
        }
        "timestamp" => {
            let mut inner = args[0];
            while let Expr::Paren(p) = inner {
                inner = &p.expr;
            }
            let direct = matches!(inner, Expr::VectorSelector(_));
            let mut v = ev.eval_vector(args[0], t)?;
            for s in &mut v {
                s.v = if direct {
                    s.t as f64 / 1000.0
                } else {
                    t as f64 / 1000.0
                };
                s.h = None;
                s.t = t;
                drop_name(&mut s.labels);
            }
            Ok(Val::Vector(v))
        }
        "abs" | "ceil" | "floor" | "exp" | "sqrt" | "ln" | "log2" | "log10" | "sgn" | "acos"
        | "acosh" | "asin" | "asinh" | "atan" | "atanh" | "cos" | "cosh" | "sin" | "sinh"
        | "tan" | "tanh" | "deg" | "rad" => {
            let f = math_fn(name);
            let v = ev.eval_vector(args[0], t)?;
            Ok(Val::Vector(map_floats(v, t, f)))
        }
        "round" => {
            let to = if args.len() > 1 {
                ev.eval_scalar(args[1], t)?
            } else {
                1.0
            };
            let inv = 1.0 / to;
            let v = ev.eval_vector(args[0], t)?;
            Ok(Val::Vector(map_floats(v, t, |x| {
                (x * inv + 0.5).floor() / inv
            })))
        }
        "clamp" => {
            let v = ev.eval_vector(args[0], t)?;
            let lo = ev.eval_scalar(args[1], t)?;
            let hi = ev.eval_scalar(args[2], t)?;
            if hi < lo {
                return Ok(Val::Vector(Vec::new()));
            }
            Ok(Val::Vector(map_floats(v, t, |x| go_max(lo, go_min(hi, x)))))
        }
        "clamp_min" => {
            let v = ev.eval_vector(args[0], t)?;
            let lo = ev.eval_scalar(args[1], t)?;
            Ok(Val::Vector(map_floats(v, t, |x| go_max(x, lo))))
        }
        "clamp_max" => {
            let v = ev.eval_vector(args[0], t)?;
            let hi = ev.eval_scalar(args[1], t)?;
            Ok(Val::Vector(map_floats(v, t, |x| go_min(x, hi))))
        }
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute"
        | "month" | "year" => {
            let v = if args.is_empty() {
                vec![VectorSample {
                    labels: Arc::new(Labels::default()),
                    t,
                    v: t as f64 / 1000.0,
                    h: None,
                }]
            } else {
                ev.eval_vector(args[0], t)?
            };
            Ok(Val::Vector(map_floats(v, t, |x| date_part(name, x))))
        }
        "label_replace" => label_replace(ev, &args, t),
        "label_join" => label_join(ev, &args, t),
        "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc"
            if ev.step > 0 && !ev.sort_warned =>
        {
            ev.sort_warned = true;
            ev.warn(
                "PromQL warning: sort is ineffective for range queries since results are always ordered by labels".into(),
            );
            call(ev, c, t)
        }
        "sort" | "sort_desc" => {
            let mut v = ev.eval_vector(args[0], t)?;
            v.retain(|s| s.h.is_none());
            let desc = name == "sort_desc";
            v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                _ if desc => b.v.partial_cmp(&a.v).unwrap_or(Ordering::Equal),
                _ => a.v.partial_cmp(&b.v).unwrap_or(Ordering::Equal),
            });
            Ok(Val::Vector(v))
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut v = ev.eval_vector(args[0], t)?;
            let mut names = Vec::new();
            for a in &args[1..] {
                names.push(ev.eval_string(a, t)?);
            }
            let desc = name == "sort_by_label_desc";
            v.sort_by(|a, b| {
                let mut o = Ordering::Equal;
                for n in &names {
                    o = natural_cmp(a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or(""));
                    if o != Ordering::Equal {
                        break;
                    }
                }
                if o == Ordering::Equal {
                    o = a.labels.cmp(&b.labels);
                }
                if desc {
                    o.reverse()
                } else {
                    o
                }
            });
            Ok(Val::Vector(v))
        }
        "absent" => {
            let v = ev.eval_vector(args[0], t)?;
            if !v.is_empty() {
                return Ok(Val::Vector(Vec::new()));
            }
            Ok(Val::Vector(vec![VectorSample {
                labels: Arc::new(absent_labels(args[0])),
                t,
                v: 1.0,
                h: None,
            }]))
        }
        "absent_over_time" => {
            let (m, _) = ev.eval_matrix(args[0], t)?;
            if !m.is_empty() {
                return Ok(Val::Vector(Vec::new()));
            }
            Ok(Val::Vector(vec![VectorSample {
                labels: Arc::new(absent_labels(args[0])),
                t,
                v: 1.0,
                h: None,
            }]))
        }
        "histogram_quantile" => {
            let q = ev.eval_scalar(args[0], t)?;
            let v = ev.eval_vector(args[1], t)?;
            nh::histogram_quantile(ev, c as *const Call as usize, q, v, t).map(Val::Vector)
        }
        "histogram_quantiles" => {
            // Experimental upstream: one output per quantile, labelled with it.
            let v = ev.eval_vector(args[0], t)?;
            let label = ev.eval_string(args[1], t)?;
            if label.is_empty() || v.iter().any(|s| s.labels.get(&label).is_some()) {
                return Err(Error::Execution(format!(
                    "histogram_quantiles: quantile label {label:?} is invalid or already present in the input"
                )));
            }
            let mut out = Vec::new();
            for a in &args[2..] {
                let q = ev.eval_scalar(a, t)?;
                let qs = openmetrics_float(q);
                for mut s in nh::histogram_quantile(ev, c as *const Call as usize, q, v.clone(), t)?
                {
                    Arc::make_mut(&mut s.labels).set(&label, &qs);
                    out.push(s);
                }
            }
            Ok(Val::Vector(out))
        }
        "histogram_fraction" => {
            let lo = ev.eval_scalar(args[0], t)?;
            let hi = ev.eval_scalar(args[1], t)?;
            let v = ev.eval_vector(args[2], t)?;
            Ok(Val::Vector(nh::histogram_fraction(
                ev,
                c as *const Call as usize,
                lo,
                hi,
                v,
                t,
            )))
        }
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            let v = ev.eval_vector(args[0], t)?;
            let f: fn(&Histogram) -> f64 = match name {
                "histogram_count" => |h| h.count,
                "histogram_sum" => |h| h.sum,
                "histogram_avg" => |h| h.sum / h.count,
                "histogram_stddev" => |h| nh::stdvar(h).sqrt(),
                _ => nh::stdvar,
            };
            Ok(Val::Vector(map_histograms(v, t, f)))
        }
        name if super::sliding::supported(name) => {
            let id = c as *const Call as usize;
            match super::sliding::at_step(ev, id, name, &args, t)? {
                Some(v) => Ok(Val::Vector(v)),
                None => over_time(ev, name, &args, t),
            }
        }
        _ => Err(Error::BadData(format!(
            "function \"{name}\" is not supported"
        ))),
    }
}

/// Go's `math.Max`: NaN wins.
pub(crate) fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Go's `math.Min`: NaN wins.
pub(crate) fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn math_fn(name: &str) -> fn(f64) -> f64 {
    match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sgn" => |x| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                x
            }
        },
        "acos" => f64::acos,
        "acosh" => f64::acosh,
        "asin" => f64::asin,
        "asinh" => f64::asinh,
        "atan" => f64::atan,
        "atanh" => f64::atanh,
        "cos" => f64::cos,
        "cosh" => f64::cosh,
        "sin" => f64::sin,
        "sinh" => f64::sinh,
        "tan" => f64::tan,
        "tanh" => f64::tanh,
        "deg" => |x| x * 180.0 / std::f64::consts::PI,
        _ => |x| x * std::f64::consts::PI / 180.0,
    }
}

/// Applies `f` to every float element (histogram elements are dropped), dropping `__name__`.
fn map_floats(v: Vec<VectorSample>, t: i64, f: impl Fn(f64) -> f64) -> Vec<VectorSample> {
    v.into_iter()
        .filter(|s| s.h.is_none())
        .map(|mut s| {
            s.v = f(s.v);
            s.t = t;
            drop_name(&mut s.labels);
            s
        })
        .collect()
}

/// Applies `f` to every histogram element (float elements are dropped), dropping `__name__`.
fn map_histograms(
    v: Vec<VectorSample>,
    t: i64,
    f: impl Fn(&Histogram) -> f64,
) -> Vec<VectorSample> {
    v.into_iter()
        .filter_map(|mut s| {
            let h = s.h.take()?;
            s.v = f(&h);
            s.t = t;
            drop_name(&mut s.labels);
            Some(s)
        })
        .collect()
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31) — Howard Hinnant's civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn date_part(name: &str, secs: f64) -> f64 {
    if !secs.is_finite() {
        return f64::NAN;
    }
    let s = secs as i64;
    let days = s.div_euclid(86_400);
    let sod = s.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    match name {
        "day_of_month" => d as f64,
        "day_of_week" => (days + 4).rem_euclid(7) as f64,
        "day_of_year" => {
            const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
            let leap = u32::from(is_leap(y) && m > 2);
            (CUM[m as usize - 1] + d + leap) as f64
        }
        "days_in_month" => match m {
            2 if is_leap(y) => 29.0,
            2 => 28.0,
            4 | 6 | 9 | 11 => 30.0,
            _ => 31.0,
        },
        "hour" => (sod / 3600) as f64,
        "minute" => (sod % 3600 / 60) as f64,
        "month" => m as f64,
        _ => y as f64,
    }
}

fn valid_label_name(n: &str) -> bool {
    // Prometheus 3 accepts any UTF-8 label name; only the empty name is invalid.
    !n.is_empty()
}

fn label_replace(ev: &mut Evaluator, args: &[&Expr], t: i64) -> Result<Val, Error> {
    let v = ev.eval_vector(args[0], t)?;
    let dst = ev.eval_string(args[1], t)?;
    let repl = ev.eval_string(args[2], t)?;
    let src = ev.eval_string(args[3], t)?;
    let re_src = ev.eval_string(args[4], t)?;
    let re = regex::Regex::new(&format!("^(?s:{re_src})$")).map_err(|_| {
        Error::Execution(format!(
            "invalid regular expression in label_replace(): {re_src}"
        ))
    })?;
    if !valid_label_name(&dst) {
        return Err(Error::Execution(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let mut out = Vec::with_capacity(v.len());
    for mut s in v {
        let val = s.labels.get(&src).unwrap_or("").to_string();
        if let Some(caps) = re.captures(&val) {
            let mut res = String::new();
            caps.expand(&repl, &mut res);
            Arc::make_mut(&mut s.labels).set(&dst, &res);
        }
        s.t = t;
        out.push(s);
    }
    Ok(Val::Vector(out))
}

fn label_join(ev: &mut Evaluator, args: &[&Expr], t: i64) -> Result<Val, Error> {
    let v = ev.eval_vector(args[0], t)?;
    let dst = ev.eval_string(args[1], t)?;
    let sep = ev.eval_string(args[2], t)?;
    let mut srcs = Vec::new();
    for a in &args[3..] {
        srcs.push(ev.eval_string(a, t)?);
    }
    if !valid_label_name(&dst) {
        return Err(Error::Execution(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let mut out = Vec::with_capacity(v.len());
    for mut s in v {
        let joined = srcs
            .iter()
            .map(|n| s.labels.get(n).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(&sep);
        Arc::make_mut(&mut s.labels).set(&dst, &joined);
        s.t = t;
        out.push(s);
    }
    Ok(Val::Vector(out))
}

/// Natural order: runs of digits compare numerically, everything else bytewise.
pub(crate) fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < ab.len() && j < bb.len() {
        if ab[i].is_ascii_digit() && bb[j].is_ascii_digit() {
            let si = i;
            while i < ab.len() && ab[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < bb.len() && bb[j].is_ascii_digit() {
                j += 1;
            }
            let na = a[si..i].trim_start_matches('0');
            let nb = b[sj..j].trim_start_matches('0');
            let o = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if o != Ordering::Equal {
                return o;
            }
        } else {
            let o = ab[i].cmp(&bb[j]);
            if o != Ordering::Equal {
                return o;
            }
            i += 1;
            j += 1;
        }
    }
    (ab.len() - i).cmp(&(bb.len() - j))
}

/// Labels of `absent(...)`: the equality matchers of a plain selector argument.
fn absent_labels(arg: &Expr) -> Labels {
    let vs = match arg {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        Expr::Paren(p) => return absent_labels(&p.expr),
        _ => return Labels::default(),
    };
    // Only equality matchers contribute; a name matched more than once is ambiguous.
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut ambiguous: Vec<String> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if seen.contains(&m.name.as_str()) {
            ambiguous.push(m.name.clone());
        }
        seen.push(&m.name);
        if matches!(m.op, promql_parser::label::MatchOp::Equal) {
            pairs.push((m.name.clone(), m.value.clone()));
        }
    }
    pairs.retain(|(n, _)| !ambiguous.contains(n));
    Labels::from_pairs(pairs)
}

/// Prometheus' quantile with linear interpolation (NaN sorts first).
pub(crate) fn quantile(q: f64, vals: &mut [f64]) -> f64 {
    if vals.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    vals.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    });
    let n = vals.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let w = rank - rank.floor();
    vals[lower as usize] * (1.0 - w) + vals[upper as usize] * w
}

/// Mean with Kahan summation, switching to an incremental mean when the sum would overflow.
pub(crate) fn kahan_mean(vals: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut c, mut mean, mut n) = (0.0, 0.0, 0.0, 0.0);
    let mut incremental = false;
    for x in vals {
        n += 1.0;
        if !incremental {
            let (ns, nc) = kahan_inc(x, sum, c);
            if n == 1.0 || !ns.is_infinite() {
                sum = ns;
                c = nc;
                continue;
            }
            incremental = true;
            mean = sum / (n - 1.0);
            c /= n - 1.0;
        }
        if mean.is_infinite() {
            if x.is_infinite() && (mean > 0.0) == (x > 0.0) {
                continue;
            }
            if x.is_finite() {
                continue;
            }
        }
        let corrected = mean + c;
        let (nm, nc) = kahan_inc(x / n - corrected / n, mean, c);
        mean = nm;
        c = nc;
    }
    if incremental {
        mean + c
    } else {
        (sum + c) / n
    }
}

/// Population variance (Welford with compensated sums).
pub(crate) fn variance(vals: impl Iterator<Item = f64>) -> f64 {
    let (mut n, mut mean, mut cm, mut aux, mut ca) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for x in vals {
        n += 1.0;
        let delta = x - (mean + cm);
        (mean, cm) = kahan_inc(delta / n, mean, cm);
        (aux, ca) = kahan_inc(delta * (x - (mean + cm)), aux, ca);
    }
    (aux + ca) / n
}

/// Least-squares fit of `samples` with x measured in seconds from `intercept_t`.
fn linear_regression(samples: &[Sample], intercept_t: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init = samples[0].v;
    let mut const_y = true;
    for (i, s) in samples.iter().enumerate() {
        if const_y && i > 0 && s.v != init {
            const_y = false;
        }
        n += 1.0;
        let x = (s.t - intercept_t) as f64 / 1000.0;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(s.v, sy, cy);
        (sxy, cxy) = kahan_inc(x * s.v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

/// What a range function produced for one series.
pub(crate) enum Out {
    F(f64),
    H(Histogram),
}

fn over_time(ev: &mut Evaluator, name: &str, args: &[&Expr], t: i64) -> Result<Val, Error> {
    // Scalar parameters first, then the range vector.
    let (margs, param, param2) = match name {
        "quantile_over_time" => {
            let q = ev.eval_scalar(args[0], t)?;
            (args[1], q, 0.0)
        }
        "predict_linear" => {
            let d = ev.eval_scalar(args[1], t)?;
            (args[0], d, 0.0)
        }
        "double_exponential_smoothing" => {
            let sf = ev.eval_scalar(args[1], t)?;
            let tf = ev.eval_scalar(args[2], t)?;
            if !(sf > 0.0 && sf < 1.0) {
                return Err(Error::Execution(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf}"
                )));
            }
            if !(tf > 0.0 && tf < 1.0) {
                return Err(Error::Execution(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {tf}"
                )));
            }
            (args[0], sf, tf)
        }
        _ => (args[0], 0.0, 0.0),
    };
    let (m, w) = ev.eval_matrix(margs, t)?;
    if name == "quantile_over_time"
        && !(0.0..=1.0).contains(&param)
        && m.iter().any(|s| !s.samples.is_empty())
    {
        ev.warn(format!(
            "PromQL warning: quantile value should be between 0 and 1, got {}",
            super::format_float(param)
        ));
    }
    let keep_name = matches!(name, "last_over_time" | "first_over_time");
    let mut out = Vec::with_capacity(m.len());
    for s in m {
        let metric = s.labels.get(METRIC_NAME).unwrap_or("");
        let r = match one_series(
            ev,
            name,
            &s.samples,
            &s.histograms,
            metric,
            w,
            t,
            param,
            param2,
        ) {
            Some(r) => r,
            None => continue,
        };
        let mut labels = s.labels;
        if !keep_name {
            ev.drop_name(&mut labels);
        }
        let (v, h) = match r {
            Out::F(v) => (v, None),
            Out::H(h) => (0.0, Some(Arc::new(h))),
        };
        out.push(VectorSample { labels, t, v, h });
    }
    Ok(Val::Vector(out))
}

/// A range function over one series' window: `fl`/`hs` are its non-stale samples in `w`, `t` the
/// evaluation time, `p`/`p2` the scalar parameters. Shared by the step-wise path and the sliding
/// evaluator ([`super::sliding`]), so both compute bit-identical values.
#[allow(clippy::too_many_arguments)]
pub(crate) fn one_series(
    ev: &mut Evaluator,
    name: &str,
    fl: &[Sample],
    hs: &[crate::HistogramSample],
    metric: &str,
    w: Window,
    t: i64,
    p: f64,
    p2: f64,
) -> Option<Out> {
    let floats = || fl.iter().map(|x| x.v);
    match name {
        "rate" | "increase" | "delta" => {
            extrapolated_rate(ev, fl, hs, w, name != "delta", name == "rate", metric)
        }
        "irate" | "idelta" => {
            // The last two samples in time order, floats and histograms alike.
            let lf = fl.len().checked_sub(1).map(|i| fl[i].t);
            let lh = hs.len().checked_sub(1).map(|i| hs[i].t);
            if lh.is_some() && lh > lf {
                let pf = fl.last().map(|x| x.t);
                let ph = (hs.len() >= 2).then(|| hs[hs.len() - 2].t);
                if pf.is_some() && pf > ph {
                    ev.warn(mix_warning(metric));
                    return None;
                }
                if hs.len() < 2 {
                    return None;
                }
                let (prev, last) = (&hs[hs.len() - 2], &hs[hs.len() - 1]);
                let dt = last.t - prev.t;
                if dt == 0 {
                    return None;
                }
                if !nh::compatible(&prev.h, &last.h) {
                    ev.warn(nh::mixed_schemas_warning(metric));
                    return None;
                }
                if nh::needs_reconcile(&prev.h, &last.h) {
                    ev.info(nh::reconciled_info("subtraction"));
                }
                let is_gauge = |h: &Histogram| h.reset_hint == crate::ResetHint::Gauge;
                let mut r = if name == "irate" {
                    if is_gauge(&prev.h) || is_gauge(&last.h) {
                        ev.warn(format!("PromQL warning: this native histogram metric is not a counter: \"{metric}\""));
                    }
                    if nh::detect_reset(&prev.h, &last.h) {
                        (*last.h).clone()
                    } else {
                        nh::sub(&last.h, &prev.h)
                    }
                } else {
                    if is_gauge(&prev.h) != is_gauge(&last.h) {
                        ev.warn(format!("PromQL warning: this native histogram metric is not a gauge: \"{metric}\""));
                    }
                    nh::sub(&last.h, &prev.h)
                };
                if name == "irate" {
                    r = nh::scale(&r, 1000.0 / dt as f64);
                }
                return Some(Out::H(nh::gauge(r)));
            }
            if lh.is_some() && fl.len() >= 2 && lh > Some(fl[fl.len() - 2].t) {
                ev.warn(mix_warning(metric));
                return None;
            }
            if fl.len() < 2 {
                return None;
            }
            let (prev, last) = (fl[fl.len() - 2], fl[fl.len() - 1]);
            let mut r = if name == "irate" && last.v < prev.v {
                last.v
            } else {
                last.v - prev.v
            };
            let dt = last.t - prev.t;
            if dt == 0 {
                return None;
            }
            if name == "irate" {
                r /= dt as f64 / 1000.0;
            }
            Some(Out::F(r))
        }
        "deriv" => {
            ignored_histograms_info(ev, fl, hs, metric);
            if fl.len() < 2 {
                return None;
            }
            Some(Out::F(linear_regression(fl, fl[0].t).0))
        }
        "predict_linear" => {
            ignored_histograms_info(ev, fl, hs, metric);
            if fl.len() < 2 {
                return None;
            }
            let (slope, icpt) = linear_regression(fl, t);
            Some(Out::F(slope * p + icpt))
        }
        "changes" | "resets" => {
            if fl.is_empty() && hs.is_empty() {
                return None;
            }
            // Walk floats and histograms merged in time order; a switch of type counts as both a
            // change and a reset.
            let (mut i, mut j) = (0, 0);
            let mut prev: Option<(f64, Option<&Histogram>)> = None;
            let mut n = 0.0;
            while i < fl.len() || j < hs.len() {
                let cur = if j >= hs.len() || (i < fl.len() && fl[i].t < hs[j].t) {
                    i += 1;
                    (fl[i - 1].v, None)
                } else {
                    j += 1;
                    (0.0, Some(hs[j - 1].h.as_ref()))
                };
                if let Some(p) = prev {
                    let hit = match (p.1, cur.1) {
                        (None, None) if name == "changes" => {
                            !(p.0 == cur.0 || (p.0.is_nan() && cur.0.is_nan()))
                        }
                        (None, None) => cur.0 < p.0,
                        (Some(a), Some(b)) if name == "changes" => a != b,
                        (Some(a), Some(b)) => nh::detect_reset(a, b),
                        _ => true,
                    };
                    if hit {
                        n += 1.0;
                    }
                }
                prev = Some(cur);
            }
            Some(Out::F(n))
        }
        "count_over_time" => Some(Out::F((fl.len() + hs.len()) as f64)),
        "present_over_time" => Some(Out::F(1.0)),
        "last_over_time" | "first_over_time" | "ts_of_last_over_time" | "ts_of_first_over_time" => {
            let last = name.contains("last");
            let f = if last { fl.last() } else { fl.first() };
            let h = if last { hs.last() } else { hs.first() };
            let pick_h = match (f, h) {
                (None, None) => return None,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(f), Some(h)) => (h.t > f.t) == last,
            };
            let ts_only = name.starts_with("ts_of");
            if pick_h {
                let h = h?;
                if ts_only {
                    return Some(Out::F(h.t as f64 / 1000.0));
                }
                Some(Out::H((*h.h).clone()))
            } else {
                let f = f?;
                Some(Out::F(if ts_only { f.t as f64 / 1000.0 } else { f.v }))
            }
        }
        "sum_over_time" | "avg_over_time" => {
            if !fl.is_empty() && !hs.is_empty() {
                ev.warn(mix_warning(metric));
                return None;
            }
            if !hs.is_empty() {
                if hs.windows(2).any(|w| !nh::compatible(&w[0].h, &w[1].h)) {
                    ev.warn(nh::INCOMPATIBLE.into());
                    return None;
                }
                if hs.windows(2).any(|w| nh::needs_reconcile(&w[0].h, &w[1].h)) {
                    ev.info(nh::reconciled_info("aggregation"));
                }
                let mut acc = nh::sum_all(hs.iter().map(|x| x.h.as_ref()))?;
                if name == "avg_over_time" {
                    acc = nh::scale(&acc, 1.0 / hs.len() as f64);
                }
                return Some(Out::H(acc));
            }
            if fl.is_empty() {
                return None;
            }
            if name == "avg_over_time" {
                Some(Out::F(kahan_mean(floats())))
            } else {
                let (mut sum, mut c) = (0.0, 0.0);
                for x in floats() {
                    (sum, c) = kahan_inc(x, sum, c);
                }
                Some(Out::F(sum + c))
            }
        }
        _ => {
            if fl.is_empty() {
                return None;
            }
            ignored_histograms_info(ev, fl, hs, metric);
            Some(Out::F(match name {
                "min_over_time" | "max_over_time" => {
                    let max = name == "max_over_time";
                    let mut r = fl[0].v;
                    for x in floats() {
                        if (if max { x > r } else { x < r }) || r.is_nan() {
                            r = x;
                        }
                    }
                    r
                }
                "ts_of_min_over_time" | "ts_of_max_over_time" => {
                    let max = name == "ts_of_max_over_time";
                    let mut r = fl[0];
                    for x in fl {
                        if (if max { x.v >= r.v } else { x.v <= r.v }) || r.v.is_nan() {
                            r = *x;
                        }
                    }
                    r.t as f64 / 1000.0
                }
                "quantile_over_time" => quantile(p, &mut floats().collect::<Vec<_>>()),
                "stddev_over_time" => variance(floats()).sqrt(),
                "stdvar_over_time" => variance(floats()),
                "mad_over_time" => {
                    if floats().any(f64::is_nan) {
                        return Some(Out::F(f64::NAN));
                    }
                    let mut v: Vec<f64> = floats().collect();
                    let med = quantile(0.5, &mut v);
                    let mut dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
                    quantile(0.5, &mut dev)
                }
                "double_exponential_smoothing" => {
                    if fl.len() < 2 {
                        return None;
                    }
                    let mut s1 = fl[0].v;
                    let mut b = fl[1].v - fl[0].v;
                    let mut s0;
                    let mut prev_s0 = 0.0;
                    for (i, x) in fl.iter().enumerate().skip(1) {
                        if i > 1 {
                            b = p2 * (s1 - prev_s0) + (1.0 - p2) * b;
                        }
                        let xv = p * x.v;
                        let y = (1.0 - p) * (s1 + b);
                        s0 = s1;
                        s1 = xv + y;
                        prev_s0 = s0;
                    }
                    s1
                }
                _ => return None,
            }))
        }
    }
}

/// `rate`, `increase` and `delta`: the Prometheus extrapolation to the window edges.
fn extrapolated_rate(
    ev: &mut Evaluator,
    fl: &[Sample],
    hs: &[crate::HistogramSample],
    w: Window,
    is_counter: bool,
    is_rate: bool,
    metric: &str,
) -> Option<Out> {
    if !fl.is_empty() && !hs.is_empty() {
        ev.warn(mix_warning(metric));
        return None;
    }
    let (first_t, last_t, n_minus_one, mut result_f, mut result_h, first_v);
    if hs.len() > 1 {
        if hs.windows(2).any(|w| !nh::compatible(&w[0].h, &w[1].h)) {
            ev.warn(nh::mixed_schemas_warning(metric));
            return None;
        }
        if nh::needs_reconcile(&hs[0].h, &hs[hs.len() - 1].h) {
            ev.info(nh::reconciled_info("subtraction"));
        }
        n_minus_one = hs.len() - 1;
        first_t = hs[0].t;
        last_t = hs[n_minus_one].t;
        let mut h = nh::sub(&hs[n_minus_one].h, &hs[0].h);
        if is_counter {
            for pair in hs.windows(2) {
                if nh::detect_reset(&pair[0].h, &pair[1].h) {
                    h = nh::add(&h, &pair[0].h);
                }
            }
        }
        if is_counter && hs.iter().any(|x| x.h.reset_hint == crate::ResetHint::Gauge) {
            ev.warn(format!(
                "PromQL warning: this native histogram metric is not a counter: \"{metric}\""
            ));
        }
        if !is_counter && hs.iter().any(|x| x.h.reset_hint != crate::ResetHint::Gauge) {
            ev.warn(format!(
                "PromQL warning: this native histogram metric is not a gauge: \"{metric}\""
            ));
        }
        // The zero point of a histogram counter is judged by its count.
        first_v = Some(hs[0].h.count);
        result_f = h.count;
        result_h = Some(h);
    } else if fl.len() > 1 {
        n_minus_one = fl.len() - 1;
        first_t = fl[0].t;
        last_t = fl[n_minus_one].t;
        result_f = fl[n_minus_one].v - fl[0].v;
        if is_counter {
            for pair in fl.windows(2) {
                if pair[1].v < pair[0].v {
                    result_f += pair[0].v;
                }
            }
        }
        result_h = None;
        first_v = Some(fl[0].v);
    } else {
        return None;
    }
    let mut to_start = (first_t - w.start) as f64 / 1000.0;
    let mut to_end = (w.end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg = sampled / n_minus_one as f64;
    let threshold = avg * 1.1;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if let Some(fv) = first_v {
        if is_counter && result_f > 0.0 && fv >= 0.0 {
            let to_zero = sampled * (fv / result_f);
            if to_zero < to_start {
                to_start = to_zero;
            }
        }
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= w.range_ms as f64 / 1000.0;
    }
    match result_h.take() {
        Some(h) => Some(Out::H(nh::gauge(nh::scale(&h, factor)))),
        None => {
            result_f *= factor;
            Some(Out::F(result_f))
        }
    }
}

fn mix_warning(metric: &str) -> String {
    format!(
        "PromQL warning: encountered a mix of histograms and floats for metric name \"{metric}\""
    )
}

/// Functions that only use floats report histograms they skipped in a mixed range.
fn ignored_histograms_info(
    ev: &mut Evaluator,
    fl: &[Sample],
    hs: &[crate::HistogramSample],
    metric: &str,
) {
    if !fl.is_empty() && !hs.is_empty() {
        ev.info(format!(
            "PromQL info: ignored histograms in a range containing both floats and histograms for metric name \"{metric}\""
        ));
    }
}

/// OpenMetrics float text: Go's `%g`, with `.0` added to integral values.
fn openmetrics_float(v: f64) -> String {
    let s = nh::go_g(v);
    if v.is_finite() && !s.contains(['e', '.']) {
        format!("{s}.0")
    } else {
        s
    }
}
