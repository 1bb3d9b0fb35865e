//! Write-path decoders: Prometheus remote_write 1.0/2.0 ([`remote_write`]) and OTLP metrics
//! ([`otlp`]) bodies become validated [`crate::WriteBatch`]es. Nothing here touches HTTP or the
//! TSDB: callers pass the body, the relevant headers, the tenant's limits and the clock.
//!
//! Every decoder is bounded (decompressed size checked against `max_request_size_bytes` before or
//! while inflating) and must never panic on arbitrary input.

pub use common::decompress;
pub mod otlp;
pub mod remote_write;
pub mod rw_wire;
pub mod validate;

pub use validate::{valid_label_name, valid_metric_name};

#[cfg(test)]
mod fuzz_tests {
    //! Both decoders must survive arbitrary bytes: random input, truncations and bit flips of valid
    //! bodies, before and after decompression. A seeded xorshift keeps failures reproducible.

    use common::config::MetricsConfig;
    use common::limits::Limits;
    use prost::Message;
    use proto::otlp::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use proto::otlp::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use proto::otlp::tonic::metrics::v1 as om;
    use proto::prometheus as v1;
    use proto::prometheus_v2 as v2;

    use super::{otlp, remote_write};

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
        fn mutate(&mut self, src: &[u8]) -> Vec<u8> {
            let mut b = src.to_vec();
            match self.below(3) {
                0 => b.truncate(self.below(src.len() + 1)),
                1 => {
                    for _ in 0..1 + self.below(4) {
                        if !b.is_empty() {
                            let i = self.below(b.len());
                            b[i] ^= 1 << self.below(8);
                        }
                    }
                }
                _ => {
                    let i = self.below(b.len() + 1);
                    let n = 1 + self.below(8);
                    let junk = self.bytes(n);
                    b.splice(i..i, junk);
                }
            }
            b
        }
    }

    fn v1_body() -> Vec<u8> {
        v1::WriteRequest {
            timeseries: vec![v1::TimeSeries {
                labels: vec![v1::Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                samples: vec![v1::Sample {
                    value: 1.0,
                    timestamp: 1,
                }],
                histograms: vec![v1::Histogram {
                    count: Some(v1::histogram::Count::CountInt(3)),
                    positive_spans: vec![v1::BucketSpan {
                        offset: 0,
                        length: 2,
                    }],
                    positive_deltas: vec![1, 1],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            metadata: vec![],
        }
        .encode_to_vec()
    }

    fn v2_body() -> Vec<u8> {
        v2::Request {
            symbols: vec!["".into(), "__name__".into(), "up".into()],
            timeseries: vec![v2::TimeSeries {
                labels_refs: vec![1, 2],
                samples: vec![v2::Sample {
                    value: 1.0,
                    timestamp: 1,
                    start_timestamp: 0,
                }],
                metadata: Some(v2::Metadata {
                    r#type: 1,
                    help_ref: 2,
                    unit_ref: 0,
                }),
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }

    fn otlp_body() -> Vec<u8> {
        let attrs = vec![KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("svc".into())),
            }),
            ..Default::default()
        }];
        let metrics = vec![
            om::Metric {
                name: "e".into(),
                data: Some(om::metric::Data::ExponentialHistogram(
                    om::ExponentialHistogram {
                        data_points: vec![om::ExponentialHistogramDataPoint {
                            scale: 9,
                            count: 3,
                            positive: Some(om::exponential_histogram_data_point::Buckets {
                                offset: -3,
                                bucket_counts: vec![1, 2],
                            }),
                            attributes: attrs.clone(),
                            ..Default::default()
                        }],
                        aggregation_temporality: 2,
                    },
                )),
                ..Default::default()
            },
            om::Metric {
                name: "h".into(),
                unit: "s".into(),
                data: Some(om::metric::Data::Histogram(om::Histogram {
                    data_points: vec![om::HistogramDataPoint {
                        count: 3,
                        bucket_counts: vec![1, 2],
                        explicit_bounds: vec![0.5],
                        ..Default::default()
                    }],
                    aggregation_temporality: 2,
                })),
                ..Default::default()
            },
        ];
        ExportMetricsServiceRequest {
            resource_metrics: vec![om::ResourceMetrics {
                resource: Some(proto::otlp::tonic::resource::v1::Resource {
                    attributes: attrs,
                    ..Default::default()
                }),
                scope_metrics: vec![om::ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
        }
        .encode_to_vec()
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes() {
        let limits = Limits {
            max_request_size_bytes: 1 << 16,
            ..Default::default()
        };
        let cfg = MetricsConfig::default();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let snappy = |b: &[u8]| snap::raw::Encoder::new().compress_vec(b).unwrap();
        let seeds = [v1_body(), v2_body(), otlp_body()];
        let json =
            serde_json::to_vec(&ExportMetricsServiceRequest::decode(seeds[2].as_slice()).unwrap())
                .unwrap();
        let rw_types = [None, Some(remote_write::CONTENT_TYPE_V2)];
        for i in 0..4000 {
            let seed = &seeds[i % 3];
            let raw = match i % 4 {
                0 => {
                    let n = rng.below(300);
                    rng.bytes(n)
                }
                _ => rng.mutate(seed),
            };
            // Remote write: compressed mutation (reaches prost and validation) and raw mutation
            // of the compressed form (reaches the snappy decoder).
            for ct in rw_types {
                let _ = remote_write::decode(&snappy(&raw), ct, None, &limits, 0);
                let m = rng.mutate(&snappy(seed));
                let _ = remote_write::decode(&m, ct, None, &limits, 0);
            }
            let _ = otlp::decode_http(&raw, None, None, &limits, &cfg);
            let m = rng.mutate(&json);
            let _ = otlp::decode_http(&m, Some("application/json"), None, &limits, &cfg);
            let gz = {
                use std::io::Write;
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&raw).unwrap();
                e.finish().unwrap()
            };
            let m = rng.mutate(&gz);
            let _ = otlp::decode_http(&m, None, Some("gzip"), &limits, &cfg);
            let _ = otlp::decode_http(&raw, None, Some("zstd"), &limits, &cfg);
            let _ = otlp::decode_http(&raw, None, Some("deflate"), &limits, &cfg);
        }
    }

    #[test]
    fn absurd_wire_values_do_not_panic() {
        let p = om::ExponentialHistogramDataPoint {
            scale: i32::MAX,
            positive: Some(om::exponential_histogram_data_point::Buckets {
                offset: i32::MAX,
                bucket_counts: vec![u64::MAX, u64::MAX, 1],
            }),
            negative: Some(om::exponential_histogram_data_point::Buckets {
                offset: i32::MIN,
                bucket_counts: vec![1, 0, 0, 0, 1],
            }),
            count: u64::MAX,
            ..Default::default()
        };
        let h = otlp::exponential_to_native(&p).unwrap();
        assert_eq!(h.schema, 8);
        let mut rng = XorShift(7);
        for _ in 0..200 {
            let p = om::ExponentialHistogramDataPoint {
                scale: (rng.next() as i32) % 40,
                zero_count: rng.next(),
                positive: Some(om::exponential_histogram_data_point::Buckets {
                    offset: rng.next() as i32,
                    bucket_counts: (0..rng.below(20)).map(|_| rng.next() % 4).collect(),
                }),
                ..Default::default()
            };
            let _ = otlp::exponential_to_native(&p);
        }
    }
}
