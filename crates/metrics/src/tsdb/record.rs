//! WAL records of the metrics head: one record per write request (or per checkpoint slice), in our own
//! compact binary form. Series are referred to by their head id after a "new series" entry defined it,
//! so steady-state records carry no label strings at all (Prometheus' WAL works the same way).
//!
//! Layout: `version u8`, then tagged sections until the end of the record:
//! - `1` new series: n, then per series `id, nlabels, (name, value)*`
//! - `7` float samples: n groups, then per group `id, count, mode, (Δt, value)*` where `mode` is a
//!   decimal scale and values are mantissa deltas, or `0xff` and values are raw f64 bits
//!   (`2` is the older form with raw values only, still read)
//! - `3` histograms: n groups, per group `id, count, (Δt, histogram)*`
//! - `4` exemplars: n groups, per group `id, count, (t, value bits, nlabels, (name, value)*)*`
//! - `5` metadata: n, per entry `family, type u8, help, unit`
//! - `6` min valid time: `t` (written by checkpoints: older samples are already in blocks)

use std::sync::Arc;

use common::{Label, Labels};

use super::encoding::{
    corrupt, decimal_column, from_decimal, get_histogram, put_f64, put_histogram, put_str,
    put_uvarint, put_varint, single_decimal, valid_scale, Reader,
};
use crate::model::{Exemplar, HistogramSample, Metadata, MetricType, Sample};
use crate::Error;

const VERSION: u8 = 1;
const TAG_SERIES: u8 = 1;
/// Float samples with raw values (records written before `TAG_SAMPLES_V2`; still read).
const TAG_SAMPLES: u8 = 2;
const TAG_HISTOGRAMS: u8 = 3;
const TAG_EXEMPLARS: u8 = 4;
const TAG_METADATA: u8 = 5;
const TAG_MIN_VALID: u8 = 6;
const TAG_SAMPLES_V2: u8 = 7;
/// Group mode of raw f64 values in `TAG_SAMPLES_V2` (other modes are decimal scales).
const RAW_VALUES: u8 = 0xff;

/// The decoded content of one WAL record.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct WalBatch {
    /// Series defined by this record (id → labels).
    pub series: Vec<(u32, Labels)>,
    /// Float samples per series id.
    pub samples: Vec<(u32, Vec<Sample>)>,
    /// Histogram samples per series id.
    pub histograms: Vec<(u32, Vec<HistogramSample>)>,
    /// Exemplars per series id.
    pub exemplars: Vec<(u32, Vec<Exemplar>)>,
    /// Metadata per family.
    pub metadata: Vec<(String, Metadata)>,
    /// Samples older than this are already in blocks (checkpoints only).
    pub min_valid_time: Option<i64>,
}

impl WalBatch {
    /// Whether the record would carry nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.series.is_empty()
            && self.samples.is_empty()
            && self.histograms.is_empty()
            && self.exemplars.is_empty()
            && self.metadata.is_empty()
            && self.min_valid_time.is_none()
    }
}

fn put_labels(buf: &mut Vec<u8>, l: &Labels) {
    put_uvarint(buf, l.len() as u64);
    for p in l {
        put_str(buf, &p.name);
        put_str(buf, &p.value);
    }
}

fn get_labels(r: &mut Reader<'_>) -> Result<Labels, Error> {
    let n = r.len(2)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str()?.to_string();
        let value = r.str()?.to_string();
        v.push(Label { name, value });
    }
    // Written from sorted label sets; re-sort defensively instead of trusting the bytes.
    if !v.windows(2).all(|w| w[0].name < w[1].name) {
        return Err(corrupt("unsorted labels in wal record"));
    }
    Ok(Labels::from_sorted(v))
}

fn type_code(t: MetricType) -> u8 {
    match t {
        MetricType::Unknown => 0,
        MetricType::Counter => 1,
        MetricType::Gauge => 2,
        MetricType::Histogram => 3,
        MetricType::GaugeHistogram => 4,
        MetricType::Summary => 5,
        MetricType::Info => 6,
        MetricType::StateSet => 7,
    }
}

fn type_from(c: u8) -> Result<MetricType, Error> {
    Ok(match c {
        0 => MetricType::Unknown,
        1 => MetricType::Counter,
        2 => MetricType::Gauge,
        3 => MetricType::Histogram,
        4 => MetricType::GaugeHistogram,
        5 => MetricType::Summary,
        6 => MetricType::Info,
        7 => MetricType::StateSet,
        _ => return Err(corrupt("metric type")),
    })
}

/// Appends one `TAG_SAMPLES_V2` group (`id, count, mode, (Δt, value)*`) to `buf`.
pub(crate) fn put_sample_group(buf: &mut Vec<u8>, id: u32, ss: &[Sample]) {
    put_uvarint(buf, u64::from(id));
    put_uvarint(buf, ss.len() as u64);
    // Decimal values as mantissa deltas: 2–4 bytes instead of 8, which halves the WAL bytes
    // written (and fsynced) per sample. One sample per series per request is the common case of
    // remote_write: no column allocation for it.
    if let [s] = ss {
        match single_decimal(s.v) {
            Some((m, scale)) => {
                buf.push(scale as u8);
                put_varint(buf, s.t);
                put_varint(buf, m);
            }
            None => {
                buf.push(RAW_VALUES);
                put_varint(buf, s.t);
                put_f64(buf, s.v);
            }
        }
        return;
    }
    let values: Vec<f64> = ss.iter().map(|s| s.v).collect();
    let dec = decimal_column(&values);
    buf.push(dec.as_ref().map_or(RAW_VALUES, |(_, scale)| *scale as u8));
    let (mut prev_t, mut prev_m) = (0i64, 0i64);
    for (i, s) in ss.iter().enumerate() {
        put_varint(buf, s.t.wrapping_sub(prev_t));
        prev_t = s.t;
        match &dec {
            Some((ms, _)) => {
                put_varint(buf, ms[i].wrapping_sub(prev_m));
                prev_m = ms[i];
            }
            None => put_f64(buf, s.v),
        }
    }
}

/// Encodes a record of new series and pre-encoded sample groups (`groups` of them in `body`, each
/// written by [`put_sample_group`]): the remote_write fast path, which never builds a [`WalBatch`].
pub(crate) fn encode_raw(series: &[(u32, Labels)], groups: usize, body: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(16 + series.len() * 64 + body.len());
    buf.push(VERSION);
    if !series.is_empty() {
        buf.push(TAG_SERIES);
        put_uvarint(&mut buf, series.len() as u64);
        for (id, l) in series {
            put_uvarint(&mut buf, u64::from(*id));
            put_labels(&mut buf, l);
        }
    }
    if groups > 0 {
        buf.push(TAG_SAMPLES_V2);
        put_uvarint(&mut buf, groups as u64);
        buf.extend_from_slice(body);
    }
    buf
}

/// Encodes a record.
pub(crate) fn encode(b: &WalBatch) -> Vec<u8> {
    let samples: usize = b.samples.iter().map(|(_, s)| s.len()).sum();
    let mut buf = Vec::with_capacity(16 + b.series.len() * 64 + b.samples.len() * 4 + samples * 10);
    buf.push(VERSION);
    if !b.series.is_empty() {
        buf.push(TAG_SERIES);
        put_uvarint(&mut buf, b.series.len() as u64);
        for (id, l) in &b.series {
            put_uvarint(&mut buf, u64::from(*id));
            put_labels(&mut buf, l);
        }
    }
    if !b.samples.is_empty() {
        buf.push(TAG_SAMPLES_V2);
        put_uvarint(&mut buf, b.samples.len() as u64);
        for (id, ss) in &b.samples {
            put_sample_group(&mut buf, *id, ss);
        }
    }
    if !b.histograms.is_empty() {
        buf.push(TAG_HISTOGRAMS);
        put_uvarint(&mut buf, b.histograms.len() as u64);
        for (id, hs) in &b.histograms {
            put_uvarint(&mut buf, u64::from(*id));
            put_uvarint(&mut buf, hs.len() as u64);
            let mut prev = 0i64;
            for h in hs {
                put_varint(&mut buf, h.t.wrapping_sub(prev));
                prev = h.t;
                put_histogram(&mut buf, &h.h);
            }
        }
    }
    if !b.exemplars.is_empty() {
        buf.push(TAG_EXEMPLARS);
        put_uvarint(&mut buf, b.exemplars.len() as u64);
        for (id, es) in &b.exemplars {
            put_uvarint(&mut buf, u64::from(*id));
            put_uvarint(&mut buf, es.len() as u64);
            for e in es {
                put_varint(&mut buf, e.t);
                put_f64(&mut buf, e.value);
                put_labels(&mut buf, &e.labels);
            }
        }
    }
    if !b.metadata.is_empty() {
        buf.push(TAG_METADATA);
        put_uvarint(&mut buf, b.metadata.len() as u64);
        for (family, m) in &b.metadata {
            put_str(&mut buf, family);
            buf.push(type_code(m.metric_type));
            put_str(&mut buf, &m.help);
            put_str(&mut buf, &m.unit);
        }
    }
    if let Some(t) = b.min_valid_time {
        buf.push(TAG_MIN_VALID);
        put_varint(&mut buf, t);
    }
    buf
}

fn id(r: &mut Reader<'_>) -> Result<u32, Error> {
    u32::try_from(r.uvarint()?).map_err(|_| corrupt("series id"))
}

/// Decodes a record written by [`encode`].
pub(crate) fn decode(bytes: &[u8]) -> Result<WalBatch, Error> {
    let mut r = Reader::new(bytes);
    if r.u8()? != VERSION {
        return Err(corrupt("unknown wal record version"));
    }
    let mut b = WalBatch::default();
    while !r.is_empty() {
        match r.u8()? {
            TAG_SERIES => {
                for _ in 0..r.len(2)? {
                    let id = id(&mut r)?;
                    b.series.push((id, get_labels(&mut r)?));
                }
            }
            TAG_SAMPLES => {
                for _ in 0..r.len(2)? {
                    let id = id(&mut r)?;
                    let n = r.len(9)?;
                    let mut ss = Vec::with_capacity(n);
                    let mut t = 0i64;
                    for _ in 0..n {
                        t = t.wrapping_add(r.varint()?);
                        ss.push(Sample { t, v: r.f64()? });
                    }
                    b.samples.push((id, ss));
                }
            }
            TAG_SAMPLES_V2 => {
                for _ in 0..r.len(3)? {
                    let id = id(&mut r)?;
                    let n = r.len(2)?;
                    let mode = r.u8()?;
                    if mode != RAW_VALUES && !valid_scale(mode) {
                        return Err(corrupt("wal sample scale"));
                    }
                    let mut ss = Vec::with_capacity(n);
                    let (mut t, mut m) = (0i64, 0i64);
                    for _ in 0..n {
                        t = t.wrapping_add(r.varint()?);
                        let v = if mode == RAW_VALUES {
                            r.f64()?
                        } else {
                            m = m.wrapping_add(r.varint()?);
                            from_decimal(m, usize::from(mode))
                        };
                        ss.push(Sample { t, v });
                    }
                    b.samples.push((id, ss));
                }
            }
            TAG_HISTOGRAMS => {
                for _ in 0..r.len(2)? {
                    let id = id(&mut r)?;
                    let n = r.len(40)?;
                    let mut hs = Vec::with_capacity(n);
                    let mut t = 0i64;
                    for _ in 0..n {
                        t = t.wrapping_add(r.varint()?);
                        hs.push(HistogramSample {
                            t,
                            h: Arc::new(get_histogram(&mut r)?),
                        });
                    }
                    b.histograms.push((id, hs));
                }
            }
            TAG_EXEMPLARS => {
                for _ in 0..r.len(2)? {
                    let id = id(&mut r)?;
                    let n = r.len(10)?;
                    let mut es = Vec::with_capacity(n);
                    for _ in 0..n {
                        let t = r.varint()?;
                        let value = r.f64()?;
                        es.push(Exemplar {
                            labels: get_labels(&mut r)?,
                            value,
                            t,
                        });
                    }
                    b.exemplars.push((id, es));
                }
            }
            TAG_METADATA => {
                for _ in 0..r.len(4)? {
                    let family = r.str()?.to_string();
                    let metric_type = type_from(r.u8()?)?;
                    let help = r.str()?.to_string();
                    let unit = r.str()?.to_string();
                    b.metadata.push((
                        family,
                        Metadata {
                            metric_type,
                            help,
                            unit,
                        },
                    ));
                }
            }
            TAG_MIN_VALID => b.min_valid_time = Some(r.varint()?),
            _ => return Err(corrupt("unknown wal record section")),
        }
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Histogram, STALE_NAN_BITS};

    #[test]
    fn records_round_trip() {
        let b = WalBatch {
            series: vec![
                (7, Labels::from_pairs([("__name__", "up"), ("job", "a")])),
                (9, Labels::default()),
            ],
            samples: vec![
                (
                    7,
                    vec![
                        Sample { t: -5, v: 1.0 },
                        Sample {
                            t: 10,
                            v: f64::from_bits(STALE_NAN_BITS),
                        },
                    ],
                ),
                (
                    9,
                    vec![Sample {
                        t: i64::MAX,
                        v: f64::NEG_INFINITY,
                    }],
                ),
                (
                    11,
                    vec![
                        Sample { t: 1, v: 1.5 },
                        Sample { t: 2, v: -2.25 },
                        Sample { t: 3, v: 1e15 },
                    ],
                ),
            ],
            histograms: vec![(
                7,
                vec![HistogramSample {
                    t: 3,
                    h: Arc::new(Histogram {
                        count: 2.0,
                        ..Default::default()
                    }),
                }],
            )],
            exemplars: vec![(
                9,
                vec![Exemplar {
                    labels: Labels::from_pairs([("trace_id", "ab")]),
                    value: 0.5,
                    t: 4,
                }],
            )],
            metadata: vec![(
                "up".into(),
                Metadata {
                    metric_type: MetricType::Gauge,
                    help: "h".into(),
                    unit: "u".into(),
                },
            )],
            min_valid_time: Some(-77),
        };
        let bytes = encode(&b);
        let got = decode(&bytes).unwrap();
        assert_eq!(format!("{got:?}"), format!("{b:?}"));
        assert_eq!(got.samples[0].1[1].v.to_bits(), STALE_NAN_BITS);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(&[2]).is_err());
        assert_eq!(
            decode(&encode(&WalBatch::default())).unwrap(),
            WalBatch::default()
        );
    }

    #[test]
    fn reads_the_older_raw_sample_section() {
        let mut rec = vec![VERSION, TAG_SAMPLES, 1, 3, 1];
        put_varint(&mut rec, 5);
        put_f64(&mut rec, 0.1);
        let b = decode(&rec).unwrap();
        assert_eq!(b.samples, vec![(3, vec![Sample { t: 5, v: 0.1 }])]);
    }
}
