//! Byte- and bit-level encodings of the TSDB: varints, a bit stream, the Gorilla-style XOR chunk the
//! head appends to, the columnar per-series encoding of blocks and the native histogram encoding.
//!
//! Two encodings on purpose: the head needs O(1) appends into a buffer that grows a few bits per
//! sample (XOR chunk, ~1–2 bytes/sample), while blocks are written once and read rarely, so they use
//! byte-aligned columns (delta-of-delta timestamps, values as decimal integers where exact) that zstd
//! squeezes much harder than bit-packed Gorilla streams.

use std::sync::Arc;

use crate::model::{Histogram, HistogramSample, ResetHint, Sample, Span};
use crate::Error;

/// A decoding error: the bytes are not what we wrote.
pub(crate) fn corrupt(what: &str) -> Error {
    Error::Internal(format!("corrupt tsdb data: {what}"))
}

#[inline]
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Appends an unsigned LEB128 varint.
#[inline]
pub(crate) fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends a zigzag-encoded signed varint.
#[inline]
pub(crate) fn put_varint(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, zigzag(v));
}

/// Length in bytes of `v` as an unsigned varint (used to pick the smaller integer encoding).
#[inline]
fn uvarint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Appends a length-prefixed string.
pub(crate) fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_uvarint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// Appends the raw little-endian bits of a float.
#[inline]
pub(crate) fn put_f64(buf: &mut Vec<u8>, v: f64) {
    buf.extend_from_slice(&v.to_bits().to_le_bytes());
}

/// A cursor over encoded bytes; every read is bounds-checked and fails with a "corrupt" error.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        let b = *self.buf.get(self.pos).ok_or_else(|| corrupt("unexpected end"))?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn uvarint(&mut self) -> Result<u64, Error> {
        let mut v = 0u64;
        let mut shift = 0u32;
        loop {
            let b = self.u8()?;
            if shift >= 64 || (shift == 63 && b > 1) {
                return Err(corrupt("varint overflow"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
        }
    }

    pub(crate) fn varint(&mut self) -> Result<i64, Error> {
        Ok(unzigzag(self.uvarint()?))
    }

    /// A varint that is a count or length; bounded by the remaining bytes so that corrupt input
    /// cannot make us allocate gigabytes (`per_item` = minimum encoded bytes per item).
    pub(crate) fn len(&mut self, per_item: usize) -> Result<usize, Error> {
        let n = self.uvarint()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(per_item.max(1) as u64) > left {
            return Err(corrupt("length exceeds data"));
        }
        Ok(n as usize)
    }

    pub(crate) fn f64(&mut self) -> Result<f64, Error> {
        let b = self.bytes(8)?;
        Ok(f64::from_bits(u64::from_le_bytes(b.try_into().expect("8 bytes"))))
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| corrupt("unexpected end"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, Error> {
        let n = self.len(1)?;
        std::str::from_utf8(self.bytes(n)?).map_err(|_| corrupt("invalid utf-8"))
    }
}

// ---------------------------------------------------------------------------------------------
// Bit stream

/// Appends bits most-significant first. `free` = unused low bits of the last byte.
#[derive(Clone, Debug, Default)]
pub(crate) struct BitWriter {
    pub(crate) buf: Vec<u8>,
    free: u8,
}

impl BitWriter {
    #[inline]
    pub(crate) fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.buf.push(0);
            self.free = 8;
        }
        self.free -= 1;
        if bit {
            *self.buf.last_mut().expect("pushed") |= 1 << self.free;
        }
    }

    /// Writes the low `n` (≤ 64) bits of `v`.
    #[inline]
    pub(crate) fn write_bits(&mut self, v: u64, mut n: u32) {
        while n > 0 {
            if self.free == 0 {
                self.buf.push(0);
                self.free = 8;
            }
            let take = n.min(u32::from(self.free));
            let bits = ((v >> (n - take)) & ((1u64 << take) - 1)) as u8;
            *self.buf.last_mut().expect("pushed") |= bits << (u32::from(self.free) - take);
            self.free -= take as u8;
            n -= take;
        }
    }
}

/// Reads bits written by [`BitWriter`].
pub(crate) struct BitReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    #[inline]
    fn read_bit(&mut self) -> Option<bool> {
        let byte = *self.buf.get(self.pos / 8)?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1 == 1;
        self.pos += 1;
        Some(bit)
    }

    #[inline]
    fn read_bits(&mut self, mut n: u32) -> Option<u64> {
        if self.pos + n as usize > self.buf.len() * 8 {
            return None;
        }
        let mut v = 0u64;
        while n > 0 {
            let byte = self.buf[self.pos / 8];
            let avail = 8 - (self.pos % 8) as u32;
            let take = n.min(avail);
            let bits = (u64::from(byte) >> (avail - take)) & ((1u64 << take) - 1);
            v = if take == 64 { bits } else { (v << take) | bits };
            self.pos += take as usize;
            n -= take;
        }
        Some(v)
    }
}

// ---------------------------------------------------------------------------------------------
// Gorilla XOR: delta-of-delta timestamps and XOR'd values, bit-packed.

/// Dod buckets: (prefix bits, prefix length, payload bits). A regular scrape interval costs one
/// bit per timestamp; jitter of a few ms costs 16 bits.
const DOD_BUCKETS: [(u64, u32, u32); 3] = [(0b10, 2, 14), (0b110, 3, 17), (0b1110, 4, 20)];

#[inline]
fn fits(v: i64, bits: u32) -> bool {
    let lim = 1i64 << (bits - 1);
    (-lim..lim).contains(&v)
}

#[inline]
fn sign_extend(v: u64, bits: u32) -> i64 {
    ((v << (64 - bits)) as i64) >> (64 - bits)
}

fn write_dod(w: &mut BitWriter, dod: i64) {
    if dod == 0 {
        w.write_bit(false);
        return;
    }
    for (prefix, plen, bits) in DOD_BUCKETS {
        if fits(dod, bits) {
            w.write_bits(prefix, plen);
            w.write_bits(dod as u64, bits);
            return;
        }
    }
    w.write_bits(0b1111, 4);
    w.write_bits(dod as u64, 64);
}

fn read_dod(r: &mut BitReader<'_>) -> Option<i64> {
    let mut ones = 0;
    while ones < 4 && r.read_bit()? {
        ones += 1;
    }
    Some(match ones {
        0 => 0,
        4 => r.read_bits(64)? as i64,
        n => {
            let bits = DOD_BUCKETS[n - 1].2;
            sign_extend(r.read_bits(bits)?, bits)
        }
    })
}

/// State of a XOR value stream: previous bits and the current meaningful-bit window.
#[derive(Clone, Copy, Debug)]
pub(crate) struct XorState {
    prev: u64,
    leading: u8,
    trailing: u8,
}

impl Default for XorState {
    fn default() -> Self {
        // leading = 0xff: no window yet, the first non-zero XOR writes one.
        Self { prev: 0, leading: 0xff, trailing: 0 }
    }
}

impl XorState {
    fn write(&mut self, w: &mut BitWriter, v: f64) {
        let bits = v.to_bits();
        let x = bits ^ self.prev;
        self.prev = bits;
        if x == 0 {
            w.write_bit(false);
            return;
        }
        w.write_bit(true);
        let lz = x.leading_zeros().min(31) as u8;
        let tz = x.trailing_zeros() as u8;
        if self.leading != 0xff && lz >= self.leading && tz >= self.trailing {
            w.write_bit(false);
            let sig = 64 - u32::from(self.leading) - u32::from(self.trailing);
            w.write_bits(x >> self.trailing, sig);
        } else {
            w.write_bit(true);
            let sig = 64 - u32::from(lz) - u32::from(tz);
            w.write_bits(u64::from(lz), 5);
            // sig is 1..=64; 64 is written as 0 in 6 bits.
            w.write_bits(u64::from(sig) & 63, 6);
            w.write_bits(x >> tz, sig);
            self.leading = lz;
            self.trailing = tz;
        }
    }

    fn read(&mut self, r: &mut BitReader<'_>) -> Option<f64> {
        if r.read_bit()? {
            if r.read_bit()? {
                let lz = r.read_bits(5)? as u8;
                let mut sig = r.read_bits(6)? as u32;
                if sig == 0 {
                    sig = 64;
                }
                if u32::from(lz) + sig > 64 {
                    return None;
                }
                self.leading = lz;
                self.trailing = (64 - u32::from(lz) - sig) as u8;
            } else if self.leading == 0xff {
                return None;
            }
            let sig = 64 - u32::from(self.leading) - u32::from(self.trailing);
            let x = r.read_bits(sig)? << self.trailing;
            self.prev ^= x;
        }
        Some(f64::from_bits(self.prev))
    }
}

/// The open chunk of a head series: Gorilla-encoded (t, v) pairs appended in time order.
///
/// Why Gorilla in the head: appends are O(1) bit pushes with no per-sample allocation, and a
/// regular series costs ~1–2 bytes per sample, so 120 samples of a series stay well under 1 KiB.
#[derive(Clone, Debug, Default)]
pub(crate) struct XorChunk {
    w: BitWriter,
    n: u16,
    t: i64,
    delta: i64,
    xor: XorState,
}

impl XorChunk {
    /// Number of samples.
    pub(crate) fn len(&self) -> usize {
        usize::from(self.n)
    }

    /// Appends a sample; `t` must be greater than the previous one.
    pub(crate) fn append(&mut self, t: i64, v: f64) {
        match self.n {
            0 => {
                self.w.write_bits(t as u64, 64);
                self.xor.write(&mut self.w, v);
            }
            1 => {
                self.delta = t - self.t;
                write_dod(&mut self.w, self.delta);
                self.xor.write(&mut self.w, v);
            }
            _ => {
                let delta = t - self.t;
                write_dod(&mut self.w, delta - self.delta);
                self.delta = delta;
                self.xor.write(&mut self.w, v);
            }
        }
        self.t = t;
        self.n += 1;
    }

    /// The encoded bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.w.buf
    }

    /// Hands out the bytes, shrunk to fit (a sealed chunk never grows again).
    pub(crate) fn into_bytes(self) -> Box<[u8]> {
        self.w.buf.into_boxed_slice()
    }
}

/// Decodes `n` samples of a XOR chunk, appending those in `[mint, maxt]` to `out`.
pub(crate) fn xor_decode(bytes: &[u8], n: usize, mint: i64, maxt: i64, out: &mut Vec<Sample>) -> Result<(), Error> {
    let mut r = BitReader::new(bytes);
    let mut xor = XorState::default();
    let mut t = 0i64;
    let mut delta = 0i64;
    let bad = || corrupt("xor chunk");
    for i in 0..n {
        match i {
            0 => t = r.read_bits(64).ok_or_else(bad)? as i64,
            1 => {
                delta = read_dod(&mut r).ok_or_else(bad)?;
                t = t.wrapping_add(delta);
            }
            _ => {
                delta = delta.wrapping_add(read_dod(&mut r).ok_or_else(bad)?);
                t = t.wrapping_add(delta);
            }
        }
        let v = xor.read(&mut r).ok_or_else(bad)?;
        if t > maxt {
            break;
        }
        if t >= mint {
            out.push(Sample { t, v });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Block columns

const VALUES_DECIMAL: u8 = 0;
const VALUES_XOR: u8 = 1;
const INTS_DELTA: u8 = 0;
const INTS_DOD: u8 = 1;
/// Mantissas stay below 2^53 so that `m / 10^s` is one correctly rounded division (exact round trip).
const MAX_MANTISSA: i64 = 1 << 53;
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

#[inline]
fn from_decimal(m: i64, scale: usize) -> f64 {
    if scale == 0 {
        m as f64
    } else {
        m as f64 / POW10[scale]
    }
}

/// `v` as `m / 10^scale` with the smallest scale that round-trips bit-exactly, if any.
#[inline]
fn to_decimal(v: f64) -> Option<(i64, usize)> {
    if !v.is_finite() || (v == 0.0 && v.is_sign_negative()) {
        return None;
    }
    for (scale, p) in POW10.iter().enumerate() {
        let m = (v * p).round();
        if m.abs() >= MAX_MANTISSA as f64 {
            return None;
        }
        let m = m as i64;
        if from_decimal(m, scale).to_bits() == v.to_bits() {
            return Some((m, scale));
        }
    }
    None
}

/// Values as integers at one common decimal scale (VictoriaMetrics' idea), or `None` when some value
/// is not exactly decimal (NaN, ±Inf, −0, too many digits): then the caller falls back to XOR.
fn decimal_column(values: &[f64]) -> Option<(Vec<i64>, usize)> {
    let mut ms = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(values.len());
    let mut max_scale = 0;
    for &v in values {
        let (m, s) = to_decimal(v)?;
        max_scale = max_scale.max(s);
        ms.push(m);
        scales.push(s as u8);
    }
    for (i, m) in ms.iter_mut().enumerate() {
        let up = max_scale - usize::from(scales[i]);
        if up > 0 {
            *m = m.checked_mul(10i64.pow(up as u32)).filter(|m| m.abs() < MAX_MANTISSA)?;
        }
        if from_decimal(*m, max_scale).to_bits() != values[i].to_bits() {
            return None;
        }
    }
    Some((ms, max_scale))
}

/// Integers as the cheaper of deltas or deltas-of-deltas (counters with a steady rate: dod ≈ 0).
fn put_ints(buf: &mut Vec<u8>, ints: &[i64]) {
    let mut delta_len = 0;
    let mut dod_len = 0;
    let (mut prev, mut prev_d) = (0i64, 0i64);
    for (i, &x) in ints.iter().enumerate() {
        let d = x.wrapping_sub(prev);
        delta_len += uvarint_len(zigzag(d));
        dod_len += uvarint_len(zigzag(if i == 0 { d } else { d.wrapping_sub(prev_d) }));
        prev = x;
        prev_d = d;
    }
    let mode = if dod_len < delta_len { INTS_DOD } else { INTS_DELTA };
    buf.push(mode);
    let (mut prev, mut prev_d) = (0i64, 0i64);
    for (i, &x) in ints.iter().enumerate() {
        let d = x.wrapping_sub(prev);
        let out = if mode == INTS_DOD && i > 0 { d.wrapping_sub(prev_d) } else { d };
        put_varint(buf, out);
        prev = x;
        prev_d = d;
    }
}

fn get_ints(r: &mut Reader<'_>, n: usize, out: &mut Vec<i64>) -> Result<(), Error> {
    let mode = r.u8()?;
    let (mut prev, mut prev_d) = (0i64, 0i64);
    for i in 0..n {
        let raw = r.varint()?;
        let d = match mode {
            INTS_DELTA => raw,
            INTS_DOD if i == 0 => raw,
            INTS_DOD => prev_d.wrapping_add(raw),
            _ => return Err(corrupt("integer column mode")),
        };
        prev = prev.wrapping_add(d);
        prev_d = d;
        out.push(prev);
    }
    Ok(())
}

/// Timestamps: first, then delta, then deltas-of-deltas as zigzag varints. Byte-aligned on purpose:
/// identical timestamp columns of series scraped together become long zstd matches.
fn put_timestamps(buf: &mut Vec<u8>, ts: impl Iterator<Item = i64>) {
    let (mut prev, mut prev_d) = (0i64, 0i64);
    for (i, t) in ts.enumerate() {
        let d = t.wrapping_sub(prev);
        put_varint(buf, if i <= 1 { d } else { d.wrapping_sub(prev_d) });
        prev = t;
        prev_d = d;
    }
}

fn get_timestamps(r: &mut Reader<'_>, n: usize, out: &mut Vec<i64>) -> Result<(), Error> {
    let (mut prev, mut prev_d) = (0i64, 0i64);
    for i in 0..n {
        let raw = r.varint()?;
        let d = if i <= 1 { raw } else { prev_d.wrapping_add(raw) };
        prev = prev.wrapping_add(d);
        prev_d = d;
        out.push(prev);
    }
    Ok(())
}

/// Encodes float samples (sorted, unique timestamps) as block columns.
pub(crate) fn encode_floats(buf: &mut Vec<u8>, samples: &[Sample]) {
    put_uvarint(buf, samples.len() as u64);
    if samples.is_empty() {
        return;
    }
    put_timestamps(buf, samples.iter().map(|s| s.t));
    let values: Vec<f64> = samples.iter().map(|s| s.v).collect();
    match decimal_column(&values) {
        Some((ints, scale)) => {
            buf.push(VALUES_DECIMAL);
            buf.push(scale as u8);
            put_ints(buf, &ints);
        }
        None => {
            buf.push(VALUES_XOR);
            let mut w = BitWriter::default();
            let mut x = XorState::default();
            for v in values {
                x.write(&mut w, v);
            }
            put_uvarint(buf, w.buf.len() as u64);
            buf.extend_from_slice(&w.buf);
        }
    }
}

/// Decodes float samples written by [`encode_floats`], keeping those in `[mint, maxt]`.
pub(crate) fn decode_floats(r: &mut Reader<'_>, mint: i64, maxt: i64, out: &mut Vec<Sample>) -> Result<(), Error> {
    let n = r.len(1)?;
    if n == 0 {
        return Ok(());
    }
    let mut ts = Vec::with_capacity(n);
    get_timestamps(r, n, &mut ts)?;
    let mut vs = Vec::with_capacity(n);
    match r.u8()? {
        VALUES_DECIMAL => {
            let scale = usize::from(r.u8()?);
            if scale >= POW10.len() {
                return Err(corrupt("decimal scale"));
            }
            let mut ints = Vec::with_capacity(n);
            get_ints(r, n, &mut ints)?;
            vs.extend(ints.into_iter().map(|m| from_decimal(m, scale)));
        }
        VALUES_XOR => {
            let len = r.len(1)?;
            let mut br = BitReader::new(r.bytes(len)?);
            let mut x = XorState::default();
            for _ in 0..n {
                vs.push(x.read(&mut br).ok_or_else(|| corrupt("xor values"))?);
            }
        }
        _ => return Err(corrupt("value column kind")),
    }
    out.extend(
        ts.into_iter()
            .zip(vs)
            .filter(|(t, _)| (mint..=maxt).contains(t))
            .map(|(t, v)| Sample { t, v }),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Native histograms: one self-contained record per sample (simple; histograms are rare so far).

fn put_spans(buf: &mut Vec<u8>, spans: &[Span]) {
    put_uvarint(buf, spans.len() as u64);
    for s in spans {
        put_varint(buf, i64::from(s.offset));
        put_uvarint(buf, u64::from(s.length));
    }
}

fn get_spans(r: &mut Reader<'_>) -> Result<Vec<Span>, Error> {
    let n = r.len(2)?;
    (0..n)
        .map(|_| {
            let offset = i32::try_from(r.varint()?).map_err(|_| corrupt("span offset"))?;
            let length = u32::try_from(r.uvarint()?).map_err(|_| corrupt("span length"))?;
            Ok(Span { offset, length })
        })
        .collect()
}

fn put_floats(buf: &mut Vec<u8>, vs: &[f64]) {
    put_uvarint(buf, vs.len() as u64);
    for &v in vs {
        put_f64(buf, v);
    }
}

fn get_floats(r: &mut Reader<'_>) -> Result<Vec<f64>, Error> {
    let n = r.len(8)?;
    (0..n).map(|_| r.f64()).collect()
}

/// Encodes one histogram.
pub(crate) fn put_histogram(buf: &mut Vec<u8>, h: &Histogram) {
    put_varint(buf, i64::from(h.schema));
    put_f64(buf, h.zero_threshold);
    put_f64(buf, h.zero_count);
    put_f64(buf, h.count);
    put_f64(buf, h.sum);
    put_spans(buf, &h.positive_spans);
    put_floats(buf, &h.positive_buckets);
    put_spans(buf, &h.negative_spans);
    put_floats(buf, &h.negative_buckets);
    put_floats(buf, &h.custom_values);
    buf.push(match h.reset_hint {
        ResetHint::Unknown => 0,
        ResetHint::Yes => 1,
        ResetHint::No => 2,
        ResetHint::Gauge => 3,
    });
}

/// Decodes one histogram written by [`put_histogram`].
pub(crate) fn get_histogram(r: &mut Reader<'_>) -> Result<Histogram, Error> {
    Ok(Histogram {
        schema: i32::try_from(r.varint()?).map_err(|_| corrupt("histogram schema"))?,
        zero_threshold: r.f64()?,
        zero_count: r.f64()?,
        count: r.f64()?,
        sum: r.f64()?,
        positive_spans: get_spans(r)?,
        positive_buckets: get_floats(r)?,
        negative_spans: get_spans(r)?,
        negative_buckets: get_floats(r)?,
        custom_values: get_floats(r)?,
        reset_hint: match r.u8()? {
            0 => ResetHint::Unknown,
            1 => ResetHint::Yes,
            2 => ResetHint::No,
            3 => ResetHint::Gauge,
            _ => return Err(corrupt("histogram reset hint")),
        },
    })
}

/// Encodes histogram samples (sorted by time): count, then per sample a timestamp delta and the histogram.
pub(crate) fn encode_histograms(buf: &mut Vec<u8>, hs: &[HistogramSample]) {
    put_uvarint(buf, hs.len() as u64);
    let mut prev = 0i64;
    for h in hs {
        put_varint(buf, h.t.wrapping_sub(prev));
        prev = h.t;
        put_histogram(buf, &h.h);
    }
}

/// Decodes histogram samples written by [`encode_histograms`], keeping those in `[mint, maxt]`.
pub(crate) fn decode_histograms(
    r: &mut Reader<'_>,
    mint: i64,
    maxt: i64,
    out: &mut Vec<HistogramSample>,
) -> Result<(), Error> {
    let n = r.len(40)?;
    let mut t = 0i64;
    for _ in 0..n {
        t = t.wrapping_add(r.varint()?);
        let h = get_histogram(r)?;
        if (mint..=maxt).contains(&t) {
            out.push(HistogramSample { t, h: Arc::new(h) });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::STALE_NAN_BITS;

    fn specials() -> Vec<f64> {
        vec![
            0.0,
            -0.0,
            1.0,
            f64::NAN,
            f64::from_bits(STALE_NAN_BITS),
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
            -1.5,
            0.1,
            1e300,
            123456.789,
            f64::from_bits(0x7ff8_0000_0000_0001),
        ]
    }

    fn bits(s: &[Sample]) -> Vec<(i64, u64)> {
        s.iter().map(|s| (s.t, s.v.to_bits())).collect()
    }

    #[test]
    fn varints_round_trip() {
        let mut b = Vec::new();
        let vals = [0i64, 1, -1, 63, -64, 1 << 40, i64::MIN, i64::MAX];
        for v in vals {
            put_varint(&mut b, v);
            put_uvarint(&mut b, v as u64);
        }
        let mut r = Reader::new(&b);
        for v in vals {
            assert_eq!(r.varint().unwrap(), v);
            assert_eq!(r.uvarint().unwrap(), v as u64);
        }
        assert!(r.is_empty());
        assert!(Reader::new(&[0xff; 11]).uvarint().is_err());
        assert_eq!(uvarint_len(0), 1);
        assert_eq!(uvarint_len(127), 1);
        assert_eq!(uvarint_len(128), 2);
        assert_eq!(uvarint_len(u64::MAX), 10);
    }

    #[test]
    fn xor_chunk_round_trips_special_values_bit_exactly() {
        let mut c = XorChunk::default();
        let mut want = Vec::new();
        let mut t = -5_000i64;
        for (i, v) in specials().into_iter().cycle().take(300).enumerate() {
            // Irregular steps exercise every dod bucket, including the 64-bit escape.
            t += [15_000, 15_001, 14_990, 1, 1 << 40, 70_000, 15_000][i % 7];
            c.append(t, v);
            want.push(Sample { t, v });
        }
        let mut got = Vec::new();
        xor_decode(c.bytes(), c.len(), i64::MIN, i64::MAX, &mut got).unwrap();
        assert_eq!(bits(&got), bits(&want));
        // Range filtering.
        let mut part = Vec::new();
        xor_decode(c.bytes(), c.len(), want[10].t, want[20].t, &mut part).unwrap();
        assert_eq!(bits(&part), bits(&want[10..=20]));
    }

    #[test]
    fn xor_chunk_is_compact_for_regular_series() {
        let mut c = XorChunk::default();
        for i in 0..120 {
            c.append(1_700_000_000_000 + i * 15_000, (i * 3) as f64);
        }
        assert!(c.bytes().len() < 200, "{} bytes", c.bytes().len());
    }

    #[test]
    fn block_columns_round_trip() {
        let cases: Vec<Vec<f64>> = vec![
            specials(),
            (0..200).map(|i| i as f64 * 0.25).collect(),
            (0..200).map(|i| 1e15 + i as f64).collect(),
            (0..200).map(|i| (i as f64).sin()).collect(),
            vec![0.1, 0.2, 0.30000000000000004, 1e-7, 12.5],
            vec![42.0],
            vec![9007199254740993.0, 1.0],
        ];
        for vals in cases {
            let samples: Vec<Sample> = vals
                .iter()
                .enumerate()
                .map(|(i, &v)| Sample { t: 1000 + i as i64 * 15_000 + (i as i64 % 3), v })
                .collect();
            let mut buf = Vec::new();
            encode_floats(&mut buf, &samples);
            let mut out = Vec::new();
            let mut r = Reader::new(&buf);
            decode_floats(&mut r, i64::MIN, i64::MAX, &mut out).unwrap();
            assert!(r.is_empty());
            assert_eq!(bits(&out), bits(&samples));
        }
    }

    #[test]
    fn decimal_detection() {
        assert_eq!(to_decimal(12.5), Some((125, 1)));
        assert_eq!(to_decimal(3.0), Some((3, 0)));
        assert_eq!(to_decimal(f64::NAN), None);
        assert_eq!(to_decimal(-0.0), None);
        assert_eq!(decimal_column(&[1.5, 2.25, 3.0]), Some((vec![150, 225, 300], 2)));
        // A counter: steady increments pick delta-of-delta and cost ~1 byte each before zstd.
        let mut b = Vec::new();
        put_ints(&mut b, &(0..100).map(|i| 1000 + 7 * i).collect::<Vec<_>>());
        assert!(b.len() < 110);
        assert_eq!(b[0], INTS_DOD);
    }

    #[test]
    fn histograms_round_trip() {
        let h = Histogram {
            schema: 3,
            zero_threshold: 1e-128,
            zero_count: 2.0,
            count: 10.0,
            sum: 33.5,
            positive_spans: vec![Span { offset: -2, length: 2 }, Span { offset: 3, length: 1 }],
            positive_buckets: vec![1.0, 2.0, 5.0],
            negative_spans: vec![Span { offset: 0, length: 1 }],
            negative_buckets: vec![0.0],
            custom_values: vec![],
            reset_hint: ResetHint::Gauge,
        };
        let hs = vec![
            HistogramSample { t: 5, h: Arc::new(h.clone()) },
            HistogramSample { t: 65, h: Arc::new(Histogram { schema: -53, custom_values: vec![1.0, 5.0], ..h }) },
        ];
        let mut buf = Vec::new();
        encode_histograms(&mut buf, &hs);
        let mut out = Vec::new();
        decode_histograms(&mut Reader::new(&buf), 0, 100, &mut out).unwrap();
        assert_eq!(out, hs);
        assert!(decode_histograms(&mut Reader::new(&buf[..buf.len() - 3]), 0, 100, &mut Vec::new()).is_err());
    }
}
