//! Zero-copy fast path for remote_write 1.0 requests that carry only float samples (what Prometheus
//! sends nearly all the time): the protobuf wire format is parsed over the decompressed body,
//! label names and values stay `&str` slices of it, and validation runs on those slices. The result
//! is a [`RawWrite`]: no `String`, no per-series `Vec`, a handful of allocations per request.
//!
//! The fast path never decides an error or a normalisation itself: anything it does not accept
//! *exactly as the full decoder would, unchanged* (histograms, exemplars, metadata, groups, wire-type
//! mismatches, truncation, invalid UTF-8, empty label values, unsorted or duplicate labels, any
//! validation failure, future timestamps) makes it return `None`, and the caller decodes the request
//! again with prost and [`super::remote_write::decode_v1`], which produces the upstream-compatible
//! messages. So its only observable difference is speed; `tests` check that equivalence.

use common::limits::Limits;

use super::validate::{valid_label_name, valid_metric_name};
use crate::model::{RawSeries, RawWrite, Sample};

/// A cursor over protobuf wire bytes. Every method returns `None` on anything unusual.
struct Wire<'a> {
    b: &'a [u8],
}

impl<'a> Wire<'a> {
    #[inline]
    fn varint(&mut self) -> Option<u64> {
        let b = self.b;
        // One-byte fast path: tags, lengths of labels and small timestamps deltas are mostly one byte.
        let &first = b.first()?;
        if first < 0x80 {
            self.b = &b[1..];
            return Some(u64::from(first));
        }
        let mut v = 0u64;
        for (i, &byte) in b.iter().enumerate().take(10) {
            if i == 9 && byte > 1 {
                return None;
            }
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                self.b = &b[i + 1..];
                return Some(v);
            }
        }
        None
    }

    #[inline]
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        if n > self.b.len() {
            return None;
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Some(head)
    }

    #[inline]
    fn fixed64(&mut self) -> Option<u64> {
        let (head, rest) = self.b.split_first_chunk::<8>()?;
        self.b = rest;
        Some(u64::from_le_bytes(*head))
    }

    /// `(field number, wire type)`; field 0 and numbers beyond 2^29−1 are invalid (prost errors).
    #[inline]
    fn key(&mut self) -> Option<(u32, u8)> {
        let k = self.varint()?;
        if k > u64::from(u32::MAX) {
            return None;
        }
        let field = (k >> 3) as u32;
        if field == 0 {
            return None;
        }
        Some((field, (k & 7) as u8))
    }

    /// Skips an unknown field (groups are left to prost).
    fn skip(&mut self, wire_type: u8) -> Option<()> {
        match wire_type {
            0 => {
                self.varint()?;
            }
            1 => {
                self.fixed64()?;
            }
            2 => {
                self.bytes()?;
            }
            5 => {
                let (_, rest) = self.b.split_first_chunk::<4>()?;
                self.b = rest;
            }
            _ => return None,
        }
        Some(())
    }

    fn is_empty(&self) -> bool {
        self.b.is_empty()
    }
}

#[inline]
fn utf8(b: &[u8]) -> Option<&str> {
    std::str::from_utf8(b).ok()
}

fn label(b: &[u8]) -> Option<(&str, &str)> {
    let mut w = Wire { b };
    let (mut name, mut value) = ("", "");
    while !w.is_empty() {
        match w.key()? {
            (1, 2) => name = utf8(w.bytes()?)?,
            (2, 2) => value = utf8(w.bytes()?)?,
            (1 | 2, _) => return None,
            (_, wt) => w.skip(wt)?,
        }
    }
    Some((name, value))
}

fn sample(b: &[u8]) -> Option<Sample> {
    let mut w = Wire { b };
    let mut s = Sample { t: 0, v: 0.0 };
    while !w.is_empty() {
        match w.key()? {
            (1, 1) => s.v = f64::from_bits(w.fixed64()?),
            (2, 0) => s.t = w.varint()? as i64,
            (1 | 2, _) => return None,
            (_, wt) => w.skip(wt)?,
        }
    }
    Some(s)
}

fn time_series<'a>(b: &'a [u8], out: &mut RawWrite<'a>) -> Option<()> {
    let mut w = Wire { b };
    let l0 = out.labels.len();
    let s0 = out.samples.len();
    while !w.is_empty() {
        match w.key()? {
            (1, 2) => {
                let l = label(w.bytes()?)?;
                out.labels.push(l);
            }
            (2, 2) => {
                let s = sample(w.bytes()?)?;
                out.samples.push(s);
            }
            // Exemplars and histograms take the full decoder; so do mismatched wire types.
            (1..=4, _) => return None,
            (_, wt) => w.skip(wt)?,
        }
    }
    out.series.push(RawSeries {
        labels: (l0 as u32, out.labels.len() as u32),
        samples: (s0 as u32, out.samples.len() as u32),
    });
    Some(())
}

/// Whether a series' labels pass validation unchanged: exactly the sets for which
/// `validate_series_labels` returns them as they are (no empty value to drop, already sorted).
fn labels_ok(labels: &[(&str, &str)], limits: &Limits) -> bool {
    let mut name_ok = false;
    let mut prev: Option<&str> = None;
    for &(n, v) in labels {
        if v.is_empty() || prev.is_some_and(|p| p >= n) {
            return false;
        }
        prev = Some(n);
        if n == common::labels::METRIC_NAME {
            if !valid_metric_name(v) {
                return false;
            }
            name_ok = true;
        }
        if !valid_label_name(n)
            || (limits.max_label_name_length > 0 && n.len() > limits.max_label_name_length)
            || (limits.max_label_value_length > 0 && v.len() > limits.max_label_value_length)
        {
            return false;
        }
    }
    let max_names = limits.max_label_names_per_series;
    name_ok && !(max_names > 0 && labels.len() > max_names)
}

/// Parses and validates a decompressed remote_write 1.0 body on the fast path; `None` means "use the
/// full decoder" (see the module doc), never "invalid".
pub fn decode_v1_raw<'a>(raw: &'a [u8], limits: &Limits, now_ms: i64) -> Option<RawWrite<'a>> {
    let mut out = RawWrite {
        series: Vec::with_capacity(raw.len() / 64 + 1),
        labels: Vec::with_capacity(raw.len() / 24 + 1),
        samples: Vec::with_capacity(raw.len() / 64 + 1),
    };
    let mut w = Wire { b: raw };
    while !w.is_empty() {
        match w.key()? {
            (1, 2) => time_series(w.bytes()?, &mut out)?,
            // Metadata (and mismatched wire types) take the full decoder.
            (1 | 3, _) => return None,
            (_, wt) => w.skip(wt)?,
        }
    }
    let grace = limits.creation_grace_period.as_millis();
    if grace > 0 {
        let max_t = now_ms.saturating_add(grace);
        if out.samples.iter().any(|s| s.t > max_t) {
            return None;
        }
    }
    for s in &out.series {
        if !labels_ok(
            &out.labels[s.labels.0 as usize..s.labels.1 as usize],
            limits,
        ) {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use common::limits::Limits;
    use prost::Message;
    use proto::prometheus as v1;

    use super::*;
    use crate::ingest::remote_write;

    struct Rng(u64);
    impl Rng {
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
    }

    const NAMES: &[&str] = &[
        "__name__", "a", "b", "instance", "job", "le", "x1", "_z", "1bad",
    ];
    const VALUES: &[&str] = &["", "v", "up", "host-1:9100", "é", "x y", "bad-name", "0"];

    fn random_request(r: &mut Rng) -> v1::WriteRequest {
        let n = r.below(6);
        v1::WriteRequest {
            timeseries: (0..n)
                .map(|_| {
                    let mut labels: Vec<v1::Label> = (0..r.below(5))
                        .map(|_| v1::Label {
                            name: NAMES[r.below(NAMES.len())].into(),
                            value: VALUES[r.below(VALUES.len())].into(),
                        })
                        .collect();
                    if r.below(4) != 0 {
                        labels.push(v1::Label {
                            name: "__name__".into(),
                            value: ["up", "node_cpu_seconds_total", "bad-name"][r.below(3)].into(),
                        });
                    }
                    if r.below(3) != 0 {
                        labels.sort_by(|a, b| a.name.cmp(&b.name));
                    }
                    v1::TimeSeries {
                        labels,
                        samples: (0..r.below(4))
                            .map(|_| v1::Sample {
                                value: f64::from_bits(r.next()),
                                timestamp: [0, 1, -5, 1_700_000_000_000, i64::MAX][r.below(5)],
                            })
                            .collect(),
                        exemplars: if r.below(10) == 0 {
                            vec![v1::Exemplar {
                                labels: vec![v1::Label {
                                    name: "trace_id".into(),
                                    value: "abc".into(),
                                }],
                                value: 1.0,
                                timestamp: 1,
                            }]
                        } else {
                            vec![]
                        },
                        ..Default::default()
                    }
                })
                .collect(),
            metadata: if r.below(10) == 0 {
                vec![v1::MetricMetadata {
                    metric_family_name: "up".into(),
                    r#type: 1,
                    help: "h".into(),
                    unit: String::new(),
                }]
            } else {
                vec![]
            },
        }
    }

    fn limits() -> Limits {
        Limits {
            max_label_value_length: 8,
            ..Default::default()
        }
    }

    /// The fast path, where it answers, must give exactly what the full decoder gives.
    fn check(raw: &[u8], limits: &Limits) -> bool {
        let now = 1_700_000_000_000;
        let fast = decode_v1_raw(raw, limits, now);
        let slow = v1::WriteRequest::decode(raw)
            .map_err(|e| e.to_string())
            .and_then(|req| remote_write::decode_v1(req, limits, now).map_err(|e| e.to_string()));
        match fast {
            Some(f) => {
                let slow = slow.unwrap_or_else(|e| panic!("fast path accepted, prost: {e}"));
                assert_eq!(f.to_batch(), slow.batch);
                assert_eq!(slow.dropped_exemplars, 0);
                true
            }
            None => false,
        }
    }

    #[test]
    fn equivalent_to_prost_on_random_requests() {
        let mut r = Rng(0x2545_f491_4f6c_dd1d);
        let limits = limits();
        let mut fast = 0;
        for _ in 0..20_000 {
            let req = random_request(&mut r);
            if check(&req.encode_to_vec(), &limits) {
                fast += 1;
            }
        }
        // Most sorted, valid requests must actually take the fast path.
        assert!(fast > 2_000, "fast path taken {fast} times");
    }

    #[test]
    fn unknown_fields_repeated_fields_and_odd_encodings() {
        use prost::encoding::{encode_key, encode_varint, WireType};
        let limits = Limits::default();
        let lbl = |buf: &mut Vec<u8>, n: &str, v: &str| {
            let mut l = Vec::new();
            encode_key(1, WireType::LengthDelimited, &mut l);
            encode_varint(n.len() as u64, &mut l);
            l.extend_from_slice(n.as_bytes());
            // Unknown fields of every skippable wire type inside a label.
            encode_key(9, WireType::Varint, &mut l);
            encode_varint(300, &mut l);
            encode_key(10, WireType::ThirtyTwoBit, &mut l);
            l.extend_from_slice(&[1, 2, 3, 4]);
            encode_key(11, WireType::SixtyFourBit, &mut l);
            l.extend_from_slice(&[0; 8]);
            encode_key(2, WireType::LengthDelimited, &mut l);
            encode_varint(v.len() as u64, &mut l);
            l.extend_from_slice(v.as_bytes());
            encode_key(1, WireType::LengthDelimited, buf);
            encode_varint(l.len() as u64, buf);
            buf.extend_from_slice(&l);
        };
        let mut ts = Vec::new();
        lbl(&mut ts, "__name__", "up");
        // A sample with timestamp before value, and the value given twice (last wins).
        let mut s = Vec::new();
        encode_key(2, WireType::Varint, &mut s);
        encode_varint(-7i64 as u64, &mut s);
        encode_key(1, WireType::SixtyFourBit, &mut s);
        s.extend_from_slice(&1.5f64.to_le_bytes());
        encode_key(1, WireType::SixtyFourBit, &mut s);
        s.extend_from_slice(&2.5f64.to_le_bytes());
        encode_key(2, WireType::LengthDelimited, &mut ts);
        encode_varint(s.len() as u64, &mut ts);
        ts.extend_from_slice(&s);
        // Labels split around the sample.
        lbl(&mut ts, "zone", "a");
        encode_key(7, WireType::LengthDelimited, &mut ts);
        encode_varint(2, &mut ts);
        ts.extend_from_slice(b"xx");
        let mut req = Vec::new();
        encode_key(5, WireType::Varint, &mut req);
        encode_varint(1, &mut req);
        encode_key(1, WireType::LengthDelimited, &mut req);
        encode_varint(ts.len() as u64, &mut req);
        req.extend_from_slice(&ts);
        assert!(check(&req, &limits));
        let f = decode_v1_raw(&req, &limits, 0).unwrap();
        assert_eq!(f.samples, vec![Sample { t: -7, v: 2.5 }]);
        assert_eq!(f.labels, vec![("__name__", "up"), ("zone", "a")]);

        // A wrong wire type for a known field and a group: left to prost.
        let mut bad = req.clone();
        encode_key(1, WireType::Varint, &mut bad);
        encode_varint(1, &mut bad);
        assert!(decode_v1_raw(&bad, &limits, 0).is_none());
        let mut group = req.clone();
        encode_key(6, WireType::StartGroup, &mut group);
        encode_key(6, WireType::EndGroup, &mut group);
        assert!(decode_v1_raw(&group, &limits, 0).is_none());
        // Truncation anywhere: never accepted unless prost accepts it too.
        for n in 0..req.len() {
            check(&req[..n], &limits);
        }
    }

    #[test]
    fn never_panics_and_never_disagrees_on_random_bytes() {
        let mut r = Rng(99);
        let limits = Limits::default();
        let seed = random_request(&mut Rng(5)).encode_to_vec();
        for i in 0..20_000 {
            let bytes: Vec<u8> = if i % 2 == 0 {
                (0..r.below(200)).map(|_| r.next() as u8).collect()
            } else {
                let mut b = seed.clone();
                for _ in 0..1 + r.below(3) {
                    if !b.is_empty() {
                        let j = r.below(b.len());
                        b[j] = r.next() as u8;
                    }
                }
                b
            };
            check(&bytes, &limits);
        }
    }

    #[test]
    fn future_timestamps_and_limits_fall_back() {
        let req = v1::WriteRequest {
            timeseries: vec![v1::TimeSeries {
                labels: vec![v1::Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                samples: vec![v1::Sample {
                    value: 1.0,
                    timestamp: 10_000_000,
                }],
                ..Default::default()
            }],
            metadata: vec![],
        }
        .encode_to_vec();
        let limits = Limits::default();
        assert!(decode_v1_raw(&req, &limits, 10_000_000).is_some());
        assert!(decode_v1_raw(&req, &limits, 0).is_none());
        let tight = Limits {
            max_label_value_length: 1,
            ..Default::default()
        };
        assert!(decode_v1_raw(&req, &tight, 10_000_000).is_none());
    }
}
