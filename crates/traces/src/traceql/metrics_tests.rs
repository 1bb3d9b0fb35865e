//! Metrics evaluator tests over the evaluator's trace set (span start times in ms from 0).

use super::ast::Static;
use super::eval_tests::{trace1, trace2};
use super::{eval_metrics, parse, MetricsResult};

const MS: u64 = 1_000_000;

fn run(q: &str) -> MetricsResult {
    let query = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    let (t1, t2) = (trace1(), trace2());
    eval_metrics(&query, [&t1, &t2], 0, 1000 * MS, 100 * MS).unwrap()
}

fn samples(v: &[f64]) -> Vec<Option<f64>> {
    v.iter()
        .map(|&x| if x.is_nan() { None } else { Some(x) })
        .collect()
}

fn close(a: &[Option<f64>], b: &[Option<f64>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Some(x), Some(y)) => (x - y).abs() < 1e-9,
            (None, None) => true,
            _ => false,
        })
}

const N: f64 = f64::NAN;

#[test]
fn counts_and_rates() {
    let r = run("{ } | count_over_time()");
    assert_eq!(r.start_ns, 0);
    assert_eq!(r.series.len(), 1);
    assert!(r.series[0].labels.is_empty());
    assert_eq!(
        r.series[0].samples,
        samples(&[7.0, 2.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    );
    assert_eq!(r.timestamp(4), 400 * MS);

    let r = run("{ } | rate()");
    assert!(close(
        &r.series[0].samples,
        &samples(&[70.0, 20.0, 0.0, 0.0, 10.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    ));

    let r = run("{ } | count_over_time() by (resource.service.name)");
    let names: Vec<_> = r.series.iter().map(|s| s.labels.clone()).collect();
    let svc = |n: &str| vec![("resource.service.name".to_string(), Static::Str(n.into()))];
    assert_eq!(
        names,
        vec![svc("api"), svc("db"), svc("frontend"), svc("worker")]
    );
    assert_eq!(r.series[0].samples[..2], samples(&[2.0, 1.0])[..]);
    assert_eq!(r.series[1].samples[..2], samples(&[1.0, 0.0])[..]);
    assert_eq!(
        r.series[3].samples[..5],
        samples(&[2.0, 1.0, 0.0, 0.0, 1.0])[..]
    );

    let r = run("{ status = error } | count_over_time()");
    // POST /pay (20ms), job (0ms), step (10ms).
    assert_eq!(r.series[0].samples[0], Some(3.0));
}

#[test]
fn value_functions() {
    let r = run("{ kind = client } | max_over_time(duration)");
    assert!(close(
        &r.series[0].samples,
        &samples(&[0.89, 0.01, N, N, N, N, N, N, N, N])
    ));
    let r = run("{ kind = client } | avg_over_time(duration)");
    assert!(close(&r.series[0].samples[..2], &samples(&[0.495, 0.01])));
    let r = run("{ kind = client } | min_over_time(duration)");
    assert!(close(&r.series[0].samples[..2], &samples(&[0.1, 0.01])));
    let r = run("{ } | sum_over_time(.retries)");
    assert!(close(&r.series[0].samples[..2], &samples(&[4.0, N])));
    let r = run("{ kind = server } | min_over_time(duration)");
    assert!(close(&r.series[0].samples[..1], &samples(&[0.09])));
    let r = run("{ resource.service.name = \"api\" } | quantile_over_time(duration, 0.5, 1)");
    assert_eq!(r.series.len(), 2);
    assert_eq!(
        r.series[0].labels,
        vec![("p".to_string(), Static::Float(0.5))]
    );
    assert!(close(&r.series[0].samples[..3], &samples(&[0.48, 0.01, N])));
    assert!(close(&r.series[1].samples[..2], &samples(&[0.86, 0.01])));
    let r = run("{ name = \"SELECT\" } | histogram_over_time(duration)");
    assert_eq!(r.series.len(), 1);
    assert_eq!(
        r.series[0].labels,
        vec![("__bucket".to_string(), Static::Float(0.134217728))]
    );
    assert_eq!(r.series[0].samples[0], Some(1.0));
    let r = run("{ } | histogram_over_time(.retries)");
    let buckets: Vec<_> = r.series.iter().map(|s| s.labels[0].1.clone()).collect();
    assert_eq!(buckets, vec![Static::Float(1.0), Static::Float(4.0)]);
    let r = run("{ kind = client } | max_over_time(duration) by (resource.service.name)");
    assert_eq!(r.series.len(), 2);
    assert!(close(&r.series[0].samples[..2], &samples(&[0.1, 0.01])));
    assert!(close(&r.series[1].samples[..2], &samples(&[0.89, N])));
}

#[test]
fn second_stage() {
    let r = run("{ } | count_over_time() by (resource.service.name) | topk(1)");
    assert_eq!(r.series.len(), 2);
    assert_eq!(r.series[0].labels[0].1, Static::Str("api".into()));
    assert_eq!(
        r.series[0].samples[..5],
        samples(&[2.0, 1.0, 0.0, 0.0, N])[..]
    );
    assert_eq!(r.series[1].labels[0].1, Static::Str("worker".into()));
    assert_eq!(r.series[1].samples[4], Some(1.0));

    let r = run("{ } | count_over_time() by (resource.service.name) | bottomk(1)");
    assert_eq!(r.series[0].labels[0].1, Static::Str("api".into()));

    let r = run("{ } | count_over_time() by (resource.service.name) > 1");
    let names: Vec<_> = r.series.iter().map(|s| s.labels[0].1.to_string()).collect();
    assert_eq!(names, vec!["\"api\"", "\"frontend\"", "\"worker\""]);
    assert_eq!(r.series[0].samples[..2], samples(&[2.0, N])[..]);
}

#[test]
fn errors_and_ranges() {
    let q = parse("{ }").unwrap();
    assert!(eval_metrics(&q, [], 0, 10, 1).is_err());
    let q = parse("{ } | rate()").unwrap();
    assert!(eval_metrics(&q, [], 0, 10, 0).is_err());
    assert!(eval_metrics(&q, [], 10, 10, 1).is_err());
    assert!(eval_metrics(&q, [], 0, u64::MAX, 1).is_err());
    let q = parse("{ } | compare({ status = error })").unwrap();
    assert!(eval_metrics(&q, [], 0, 10, 1).is_ok());
    let q = parse("{ } | compare({ status = error }, 0)").unwrap();
    assert!(eval_metrics(&q, [], 0, 10, 1).is_err());
    // Start is aligned down to the step; spans outside the range are ignored.
    let q = parse("{ } | count_over_time()").unwrap();
    let t = trace1();
    let r = eval_metrics(&q, [&t], 150 * MS, 300 * MS, 100 * MS).unwrap();
    assert_eq!(r.start_ns, 100 * MS);
    assert_eq!(r.series[0].samples, samples(&[1.0, 0.0]));
    let r = eval_metrics(&q, [&t], 500 * MS, 600 * MS, 100 * MS).unwrap();
    assert!(r.series.is_empty());
}
