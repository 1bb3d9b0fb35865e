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
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| corrupt("unexpected end"))?;
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
        Ok(f64::from_bits(u64::from_le_bytes(
            b.try_into().expect("8 bytes"),
        )))
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
    /// Grows by a quarter instead of doubling: a head holds one open buffer per series, and
    /// doubling would leave up to half of each unused (the realloc cost is a few small memcpys).
    #[inline]
    fn push_byte(&mut self) {
        if self.buf.len() == self.buf.capacity() {
            self.buf.reserve_exact((self.buf.len() / 4).max(16));
        }
        self.buf.push(0);
        self.free = 8;
    }

    #[inline]
    pub(crate) fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.push_byte();
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
                self.push_byte();
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

/// Dod buckets: (prefix bits, prefix length, payload bits), then a 64-bit escape. A regular scrape
/// interval costs one bit per timestamp and scrape jitter of a few ms 9 bits (Prometheus' smallest
/// bucket is 14 bits, sized for seconds-resolution jitter). Decimal mantissa deltas use the same
/// buckets: 9–24 bits for typical counters.
const DOD_BUCKETS: [(u64, u32, u32); 4] = [
    (0b10, 2, 7),
    (0b110, 3, 14),
    (0b1110, 4, 20),
    (0b11110, 5, 32),
];

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
    w.write_bits(0b11111, 5);
    w.write_bits(dod as u64, 64);
}

fn read_dod(r: &mut BitReader<'_>) -> Option<i64> {
    let mut ones = 0;
    while ones < 5 && r.read_bit()? {
        ones += 1;
    }
    Some(match ones {
        0 => 0,
        5 => r.read_bits(64)? as i64,
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
        Self {
            prev: 0,
            leading: 0xff,
            trailing: 0,
        }
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

/// Chunk mode byte of XOR-encoded values (any other value below 16 is a decimal scale).
const MODE_XOR: u8 = 0xff;
/// Chunk mode byte of a packed sealed chunk (see [`pack_chunk`]).
const MODE_PACKED: u8 = 0xfe;

/// Re-encodes the samples of a full decimal chunk for the rest of its life in the head: timestamps
/// and mantissas each as the best of raw/delta/dod, common factor removed, bit-packed at the width
/// of the largest value. Gorilla's prefix codes suit appending; once a chunk is sealed its value
/// range is known, and a fixed width is ~30% smaller for noisy counters. `None` if not decimal.
pub(crate) fn pack_chunk(samples: &[Sample]) -> Option<Vec<u8>> {
    let values: Vec<f64> = samples.iter().map(|s| s.v).collect();
    let (ints, scale) = decimal_column(&values)?;
    let mut buf = vec![MODE_PACKED, scale as u8];
    let ts: Vec<i64> = samples.iter().map(|s| s.t).collect();
    put_ints(&mut buf, &ts, true);
    put_ints(&mut buf, &ints, true);
    Some(buf)
}

fn unpack_chunk(
    bytes: &[u8],
    n: usize,
    mint: i64,
    maxt: i64,
    out: &mut Vec<Sample>,
) -> Result<(), Error> {
    let mut r = Reader::new(bytes);
    r.u8()?;
    let scale = usize::from(r.u8()?);
    if scale >= POW10.len() {
        return Err(corrupt("packed chunk scale"));
    }
    let (mut ts, mut ms) = (Vec::with_capacity(n), Vec::with_capacity(n));
    get_ints(&mut r, n, &mut ts, true)?;
    get_ints(&mut r, n, &mut ms, true)?;
    let vs = ms.into_iter().map(|m| from_decimal(m, scale)).collect();
    zip_samples(ts, vs, mint, maxt, out);
    Ok(())
}

/// The open chunk of a head series: (t, v) pairs appended in time order, bit-packed.
///
/// Timestamps are Gorilla delta-of-deltas. Values have two modes chosen at the first sample:
/// *decimal* (the value is `m / 10^scale` exactly; the mantissas are delta-of-delta coded with the
/// same variable-length buckets) or Gorilla *XOR*. Why two: decimal counters and gauges (the bulk of
/// exporter data) XOR into 40–50 significant bits per sample, while their mantissa deltas need 9–24 —
/// this is what keeps the head under 1 KiB per series. A sample that does not fit a decimal chunk
/// (more decimals, NaN, ±Inf, −0) makes [`HeadChunk::try_append`] refuse; the series then seals the
/// chunk and starts a new one, whose mode that sample decides.
#[derive(Clone, Debug)]
pub(crate) struct HeadChunk {
    // Flat on purpose: one of these lives in every series, and nesting `BitWriter`/`XorState`
    // would pad each small field to 8 bytes (88 → 56 bytes per series). The previous timestamp is
    // the series' newest sample, passed in by the caller.
    buf: Vec<u8>,
    delta: i64,
    /// XOR mode: previous value bits; decimal mode: previous mantissa.
    prev: u64,
    /// Decimal mode: previous mantissa delta.
    mdelta: i64,
    n: u16,
    /// Decimal scale, or `MODE_XOR`.
    mode: u8,
    free: u8,
    leading: u8,
    trailing: u8,
}

impl Default for HeadChunk {
    fn default() -> Self {
        let x = XorState::default();
        Self {
            buf: Vec::new(),
            delta: 0,
            prev: 0,
            mdelta: 0,
            n: 0,
            mode: 0,
            free: 0,
            leading: x.leading,
            trailing: x.trailing,
        }
    }
}

/// `v` as a mantissa at exactly `scale`, if that is exact.
#[inline]
fn mantissa_at(v: f64, scale: u8) -> Option<i64> {
    let s = usize::from(scale);
    if s >= POW10.len() || !v.is_finite() {
        return None;
    }
    let m = (v * POW10[s]).round();
    if m.abs() >= MAX_MANTISSA as f64 {
        return None;
    }
    let m = m as i64;
    (from_decimal(m, s).to_bits() == v.to_bits()).then_some(m)
}

impl HeadChunk {
    /// Number of samples.
    pub(crate) fn len(&self) -> usize {
        usize::from(self.n)
    }

    /// The decimal scale of this chunk (a hint for the next chunk of the series), if decimal.
    pub(crate) fn scale(&self) -> Option<u8> {
        (self.n > 0 && self.mode != MODE_XOR).then_some(self.mode)
    }

    /// Appends a sample (`t` greater than `prev_t`, the previous sample's time). `scale_hint` is
    /// the scale the series used before, so that a chunk starting on `2.0` still takes `1.25` next.
    /// Returns `false`, and changes nothing, when a non-empty decimal chunk cannot hold `v` exactly.
    pub(crate) fn try_append(&mut self, prev_t: i64, t: i64, v: f64, scale_hint: u8) -> bool {
        let m = if self.n == 0 {
            self.mode = match to_decimal(v) {
                Some((_, s)) if mantissa_at(v, (s as u8).max(scale_hint)).is_some() => {
                    (s as u8).max(scale_hint)
                }
                _ => MODE_XOR,
            };
            None
        } else if self.mode != MODE_XOR {
            match mantissa_at(v, self.mode) {
                Some(m) => Some(m),
                None => return false,
            }
        } else {
            None
        };
        let mut w = BitWriter {
            buf: std::mem::take(&mut self.buf),
            free: self.free,
        };
        let mut xor = XorState {
            prev: self.prev,
            leading: self.leading,
            trailing: self.trailing,
        };
        if self.n == 0 {
            w.write_bits(u64::from(self.mode), 8);
            w.write_bits(t as u64, 64);
            if self.mode == MODE_XOR {
                xor.write(&mut w, v);
            } else {
                let m = mantissa_at(v, self.mode).expect("checked above");
                w.write_bits(m as u64, 64);
                xor.prev = m as u64;
            }
        } else {
            let delta = t - prev_t;
            write_dod(
                &mut w,
                if self.n == 1 {
                    delta
                } else {
                    delta - self.delta
                },
            );
            self.delta = delta;
            match m {
                Some(m) => {
                    let d = m.wrapping_sub(xor.prev as i64);
                    write_dod(
                        &mut w,
                        if self.n == 1 {
                            d
                        } else {
                            d.wrapping_sub(self.mdelta)
                        },
                    );
                    xor.prev = m as u64;
                    self.mdelta = d;
                }
                None => xor.write(&mut w, v),
            }
        }
        self.buf = w.buf;
        self.free = w.free;
        self.prev = xor.prev;
        self.leading = xor.leading;
        self.trailing = xor.trailing;
        self.n += 1;
        true
    }

    /// Time of the first sample (the chunk's minimum), if any.
    pub(crate) fn first_t(&self) -> Option<i64> {
        if self.n == 0 {
            return None;
        }
        let mut r = BitReader::new(&self.buf);
        r.read_bits(8)?;
        r.read_bits(64).map(|t| t as i64)
    }

    /// The encoded bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Allocated bytes.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Hands out the bytes, shrunk to fit (a sealed chunk never grows again).
    pub(crate) fn into_bytes(self) -> Box<[u8]> {
        self.buf.into_boxed_slice()
    }
}

/// Decodes `n` samples of a head chunk, appending those in `[mint, maxt]` to `out`.
pub(crate) fn chunk_decode(
    bytes: &[u8],
    n: usize,
    mint: i64,
    maxt: i64,
    out: &mut Vec<Sample>,
) -> Result<(), Error> {
    if n == 0 {
        return Ok(());
    }
    if bytes.first() == Some(&MODE_PACKED) {
        return unpack_chunk(bytes, n, mint, maxt, out);
    }
    let bad = || corrupt("head chunk");
    let mut r = BitReader::new(bytes);
    let mode = r.read_bits(8).ok_or_else(bad)? as u8;
    if mode != MODE_XOR && usize::from(mode) >= POW10.len() {
        return Err(bad());
    }
    let mut xor = XorState::default();
    let mut t = 0i64;
    let mut delta = 0i64;
    let (mut m, mut mdelta) = (0i64, 0i64);
    for i in 0..n {
        let v;
        if i == 0 {
            t = r.read_bits(64).ok_or_else(bad)? as i64;
            if mode == MODE_XOR {
                v = xor.read(&mut r).ok_or_else(bad)?;
            } else {
                m = r.read_bits(64).ok_or_else(bad)? as i64;
                v = from_decimal(m, usize::from(mode));
            }
        } else {
            let dod = read_dod(&mut r).ok_or_else(bad)?;
            delta = if i == 1 { dod } else { delta.wrapping_add(dod) };
            t = t.wrapping_add(delta);
            if mode == MODE_XOR {
                v = xor.read(&mut r).ok_or_else(bad)?;
            } else {
                let mdod = read_dod(&mut r).ok_or_else(bad)?;
                mdelta = if i == 1 {
                    mdod
                } else {
                    mdelta.wrapping_add(mdod)
                };
                m = m.wrapping_add(mdelta);
                v = from_decimal(m, usize::from(mode));
            }
        }
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
const INTS_RAW: u8 = 2;
/// Mantissas stay below 2^53 so that `m / 10^s` is one correctly rounded division (exact round trip).
const MAX_MANTISSA: i64 = 1 << 53;
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// Whether `scale` is a decimal scale this module can decode.
pub(crate) fn valid_scale(scale: u8) -> bool {
    usize::from(scale) < POW10.len()
}

#[inline]
pub(crate) fn from_decimal(m: i64, scale: usize) -> f64 {
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
/// [`decimal_column`] of a single value, without allocating.
pub(crate) fn single_decimal(v: f64) -> Option<(i64, usize)> {
    let (m, s) = to_decimal(v)?;
    (from_decimal(m, s).to_bits() == v.to_bits()).then_some((m, s))
}

pub(crate) fn decimal_column(values: &[f64]) -> Option<(Vec<i64>, usize)> {
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
            *m = m
                .checked_mul(10i64.pow(up as u32))
                .filter(|m| m.abs() < MAX_MANTISSA)?;
        }
        if from_decimal(*m, max_scale).to_bits() != values[i].to_bits() {
            return None;
        }
    }
    Some((ms, max_scale))
}

/// Estimated bytes of `vs` written as byte planes after entropy coding (order-0 entropy per plane).
/// zstd lands ~15% above this on noisy planes (one Huffman table spans all planes of a page).
fn planes_entropy(vs: &[u64], bits: u32) -> f64 {
    let mut total = 0.0;
    for plane in 0..bits.div_ceil(8) {
        let mut counts = [0u32; 256];
        for &v in vs {
            counts[((v >> (8 * plane)) & 0xff) as usize] += 1;
        }
        let n = vs.len() as f64;
        let h: f64 = counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = f64::from(c) / n;
                -p * p.log2()
            })
            .sum();
        // Miller–Madow correction: a ~120-value sample underestimates the entropy of a plane.
        let k = counts.iter().filter(|&&c| c > 0).count() as f64;
        total += n * (h + (k - 1.0) / (2.0 * n * std::f64::consts::LN_2)) / 8.0;
    }
    total
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The integer column transformed by `mode`: raw values, deltas (first absolute) or
/// deltas-of-deltas (first absolute, second a delta).
fn int_transform(ints: &[i64], mode: u8) -> Vec<i64> {
    let (mut prev, mut prev_d) = (0i64, 0i64);
    ints.iter()
        .enumerate()
        .map(|(i, &x)| {
            let d = x.wrapping_sub(prev);
            let out = match mode {
                INTS_RAW => x,
                INTS_DOD if i > 1 => d.wrapping_sub(prev_d),
                _ => d,
            };
            prev = x;
            prev_d = d;
            out
        })
        .collect()
}

/// Leading elements of a transformed column that are written as varints (they are absolute values
/// or first deltas, unlike the rest, and would widen every byte plane).
fn int_header(mode: u8) -> usize {
    match mode {
        INTS_RAW => 0,
        INTS_DELTA => 1,
        _ => 2,
    }
}

/// Integers as raw values, deltas or deltas-of-deltas, whichever needs the fewest significant bits
/// (gauges: raw or delta; counters with a steady rate: dod ≈ 0). A common factor of the body is
/// divided out (byte gauges move in pages: multiples of 4096). The body is then written as byte
/// planes of a fixed width (all low bytes, then all second bytes, …): each plane has its own byte
/// distribution, so zstd's entropy coder gets close to the values' real entropy, where interleaved
/// varint bytes mix high-entropy low bytes with near-constant high bytes. With `packed`, the body is
/// instead bit-packed at the width of its largest value (sealed head chunks: no zstd behind them).
fn put_ints(buf: &mut Vec<u8>, ints: &[i64], packed: bool) {
    let mut best: Option<(u64, u8, Vec<i64>)> = None;
    for mode in [INTS_DELTA, INTS_DOD, INTS_RAW] {
        let z = int_transform(ints, mode);
        let cost: u64 = z
            .iter()
            .map(|&v| u64::from(64 - zigzag(v).leading_zeros()))
            .sum();
        if best.as_ref().is_none_or(|b| cost < b.0) {
            best = Some((cost, mode, z));
        }
    }
    let Some((_, mode, z)) = best else { return };
    buf.push(mode);
    let h = int_header(mode).min(z.len());
    for &v in &z[..h] {
        put_varint(buf, v);
    }
    let rest = &z[h..];
    if rest.is_empty() {
        return;
    }
    let g = rest
        .iter()
        .fold(0u64, |g, &v| gcd(g, v.unsigned_abs()))
        .max(1);
    put_uvarint(buf, g);
    // `g` divides every value exactly, and |v / g| ≤ |v|, so no overflow.
    let rest: Vec<u64> = rest
        .iter()
        .map(|&v| zigzag(if g > 1 { v / g as i64 } else { v }))
        .collect();
    let max = rest.iter().copied().max().unwrap_or(0);
    let bits = 64 - max.leading_zeros();
    // In blocks, byte planes win when bytes repeat (zstd finds them); fixed-width bits win for
    // near-uniform noise, where zstd's byte-wise entropy coder cannot go below whole-byte symbols
    // of a plane. Decide per column from the planes' byte entropy (flag 0x80 in the width byte).
    let use_bits =
        packed || (rest.len() * bits as usize) as f64 / 8.0 < 1.15 * planes_entropy(&rest, bits);
    if use_bits {
        buf.push(if packed {
            bits as u8
        } else {
            0x80 | bits as u8
        });
        let mut w = BitWriter::default();
        w.buf.reserve((rest.len() * bits as usize).div_ceil(8));
        for &v in &rest {
            w.write_bits(v, bits);
        }
        buf.extend_from_slice(&w.buf);
        return;
    }
    let width = (64 - max.leading_zeros()).div_ceil(8) as usize;
    buf.push(width as u8);
    buf.reserve(rest.len() * width);
    for plane in 0..width {
        buf.extend(rest.iter().map(|&v| (v >> (8 * plane)) as u8));
    }
}

fn get_ints(r: &mut Reader<'_>, n: usize, out: &mut Vec<i64>, packed: bool) -> Result<(), Error> {
    if n == 0 {
        return Ok(());
    }
    let mode = r.u8()?;
    if mode > INTS_RAW {
        return Err(corrupt("integer column mode"));
    }
    let h = int_header(mode).min(n);
    let mut z = Vec::with_capacity(n);
    for _ in 0..h {
        z.push(r.varint()?);
    }
    if n > h {
        let g = r.uvarint()?.max(1) as i64;
        let width = usize::from(r.u8()?);
        let rest = n - h;
        let (packed, width) = if !packed && width & 0x80 != 0 {
            (true, width & 0x7f)
        } else {
            (packed, width)
        };
        if packed {
            if width > 64 {
                return Err(corrupt("integer column width"));
            }
            let bytes = r.bytes((rest * width).div_ceil(8))?;
            let mut br = BitReader::new(bytes);
            for _ in 0..rest {
                let v = br
                    .read_bits(width as u32)
                    .ok_or_else(|| corrupt("packed integers"))?;
                z.push(unzigzag(v).wrapping_mul(g));
            }
        } else {
            if width > 8 {
                return Err(corrupt("integer column width"));
            }
            let planes = r.bytes(rest * width)?;
            z.extend((0..rest).map(|i| {
                let v = (0..width).fold(0u64, |acc, p| {
                    acc | (u64::from(planes[p * rest + i]) << (8 * p))
                });
                unzigzag(v).wrapping_mul(g)
            }));
        }
    }
    let (mut prev, mut prev_d) = (0i64, 0i64);
    for (i, raw) in z.into_iter().enumerate() {
        let x = match mode {
            INTS_RAW => raw,
            INTS_DOD if i > 1 => prev.wrapping_add(prev_d.wrapping_add(raw)),
            _ => prev.wrapping_add(raw),
        };
        prev_d = x.wrapping_sub(prev);
        prev = x;
        out.push(x);
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
        let d = if i <= 1 {
            raw
        } else {
            prev_d.wrapping_add(raw)
        };
        prev = prev.wrapping_add(d);
        prev_d = d;
        out.push(prev);
    }
    Ok(())
}

/// Encodes the timestamp column of float samples (sorted, unique), without a count.
pub(crate) fn encode_timestamps(buf: &mut Vec<u8>, samples: &[Sample]) {
    put_timestamps(buf, samples.iter().map(|s| s.t));
}

/// Decodes `n` timestamps written by [`encode_timestamps`].
pub(crate) fn decode_timestamps(
    r: &mut Reader<'_>,
    n: usize,
    out: &mut Vec<i64>,
) -> Result<(), Error> {
    get_timestamps(r, n, out)
}

/// Encodes the value column of float samples, without a count: decimal integers when every value is
/// exactly decimal, else XOR.
pub(crate) fn encode_values(buf: &mut Vec<u8>, samples: &[Sample]) {
    if samples.is_empty() {
        return;
    }
    let values: Vec<f64> = samples.iter().map(|s| s.v).collect();
    match decimal_column(&values) {
        Some((ints, scale)) => {
            buf.push(VALUES_DECIMAL);
            buf.push(scale as u8);
            put_ints(buf, &ints, false);
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

/// Decodes `n` values written by [`encode_values`].
pub(crate) fn decode_values(r: &mut Reader<'_>, n: usize, out: &mut Vec<f64>) -> Result<(), Error> {
    if n == 0 {
        return Ok(());
    }
    match r.u8()? {
        VALUES_DECIMAL => {
            let scale = usize::from(r.u8()?);
            if scale >= POW10.len() {
                return Err(corrupt("decimal scale"));
            }
            let mut ints = Vec::with_capacity(n);
            get_ints(r, n, &mut ints, false)?;
            out.extend(ints.into_iter().map(|m| from_decimal(m, scale)));
        }
        VALUES_XOR => {
            let len = r.len(1)?;
            let mut br = BitReader::new(r.bytes(len)?);
            let mut x = XorState::default();
            for _ in 0..n {
                out.push(x.read(&mut br).ok_or_else(|| corrupt("xor values"))?);
            }
        }
        _ => return Err(corrupt("value column kind")),
    }
    Ok(())
}

/// Zips decoded columns into samples in `[mint, maxt]`.
pub(crate) fn zip_samples(ts: Vec<i64>, vs: Vec<f64>, mint: i64, maxt: i64, out: &mut Vec<Sample>) {
    out.extend(
        ts.into_iter()
            .zip(vs)
            .filter(|(t, _)| (mint..=maxt).contains(t))
            .map(|(t, v)| Sample { t, v }),
    );
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
    }

    /// Appends like a head series does: a refused sample seals the chunk and starts the next.
    fn chunks_of(samples: &[Sample]) -> Vec<HeadChunk> {
        let mut chunks = vec![HeadChunk::default()];
        let mut prev_t = i64::MIN;
        for s in samples {
            let c = chunks.last_mut().unwrap();
            let hint = c.scale().unwrap_or(0);
            if !c.try_append(prev_t, s.t, s.v, hint) {
                let mut next = HeadChunk::default();
                assert!(next.try_append(prev_t, s.t, s.v, hint));
                assert_eq!(next.first_t(), Some(s.t));
                chunks.push(next);
            }
            prev_t = s.t;
        }
        chunks
    }

    fn decode_all(chunks: &[HeadChunk], mint: i64, maxt: i64) -> Vec<Sample> {
        let mut out = Vec::new();
        for c in chunks {
            chunk_decode(c.bytes(), c.len(), mint, maxt, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn head_chunks_round_trip_special_values_bit_exactly() {
        let mut want = Vec::new();
        let mut t = -5_000i64;
        let mut vals = specials();
        vals.extend((0..50).map(|i| i as f64 * 0.25));
        vals.extend((0..50).map(|i| 1e15 + i as f64 * 3.0));
        for (i, v) in vals.into_iter().cycle().take(600).enumerate() {
            // Irregular steps exercise every dod bucket, including the 64-bit escape.
            t += [15_000, 15_001, 14_990, 1, 1 << 40, 70_000, 15_000, 1 << 25][i % 8];
            want.push(Sample { t, v });
        }
        let chunks = chunks_of(&want);
        assert!(chunks.iter().any(|c| c.scale().is_some()));
        assert!(chunks.iter().any(|c| c.scale().is_none()));
        assert_eq!(bits(&decode_all(&chunks, i64::MIN, i64::MAX)), bits(&want));
        assert_eq!(
            bits(&decode_all(&chunks, want[10].t, want[20].t)),
            bits(&want[10..=20])
        );
        assert!(chunk_decode(&[0x20], 1, 0, 0, &mut Vec::new()).is_err());
    }

    #[test]
    fn packed_chunks_round_trip() {
        let samples: Vec<Sample> = (0..120)
            .map(|i| Sample {
                t: 1_000 + i * 15_000 + (i * 7 % 5),
                v: (i * i % 977) as f64 / 100.0,
            })
            .collect();
        let p = pack_chunk(&samples).unwrap();
        let mut out = Vec::new();
        chunk_decode(&p, samples.len(), i64::MIN, i64::MAX, &mut out).unwrap();
        assert_eq!(bits(&out), bits(&samples));
        let mut part = Vec::new();
        chunk_decode(&p, samples.len(), samples[3].t, samples[5].t, &mut part).unwrap();
        assert_eq!(bits(&part), bits(&samples[3..=5]));
        let chunks = chunks_of(&samples);
        let gorilla: usize = chunks.iter().map(|c| c.bytes().len()).sum();
        assert!(p.len() < gorilla, "packed {} vs gorilla {gorilla}", p.len());
        assert!(pack_chunk(&[Sample { t: 1, v: f64::NAN }]).is_none());
        assert!(chunk_decode(
            &p[..p.len() - 3],
            samples.len(),
            0,
            i64::MAX,
            &mut Vec::new()
        )
        .is_err());
    }

    #[test]
    fn head_chunk_is_compact_for_regular_series() {
        // A 2-decimal counter with ±2ms scrape jitter: decimal mode, ~3 bytes/sample.
        let samples: Vec<Sample> = (0..120)
            .map(|i| Sample {
                t: 1_700_000_000_000 + i * 15_000 + (i * 7 % 5) - 2,
                v: 1000.0 + (i * i % 700) as f64 / 100.0,
            })
            .collect();
        let chunks = chunks_of(&samples);
        // 1000.0 starts a scale-0 chunk, 1000.01 needs scale 2: one early seal, then one chunk.
        assert_eq!(chunks.len(), 2);
        let bytes: usize = chunks.iter().map(|c| c.bytes().len()).sum();
        assert!(bytes < 400, "{bytes} bytes");
        assert_eq!(
            bits(&decode_all(&chunks, i64::MIN, i64::MAX)),
            bits(&samples)
        );
        // A constant: ~2 bits per sample.
        let c = chunks_of(
            &(0..120)
                .map(|i| Sample {
                    t: i * 15_000,
                    v: 1.0,
                })
                .collect::<Vec<_>>(),
        );
        assert!(c[0].bytes().len() <= 64, "{} bytes", c[0].bytes().len());
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
                .map(|(i, &v)| Sample {
                    t: 1000 + i as i64 * 15_000 + (i as i64 % 3),
                    v,
                })
                .collect();
            let mut buf = Vec::new();
            encode_timestamps(&mut buf, &samples);
            encode_values(&mut buf, &samples);
            let mut r = Reader::new(&buf);
            let (mut ts, mut vs) = (Vec::new(), Vec::new());
            decode_timestamps(&mut r, samples.len(), &mut ts).unwrap();
            decode_values(&mut r, samples.len(), &mut vs).unwrap();
            assert!(r.is_empty());
            let mut out = Vec::new();
            zip_samples(ts, vs, i64::MIN, i64::MAX, &mut out);
            assert_eq!(bits(&out), bits(&samples));
        }
    }

    #[test]
    fn decimal_detection() {
        assert_eq!(to_decimal(12.5), Some((125, 1)));
        assert_eq!(to_decimal(3.0), Some((3, 0)));
        assert_eq!(to_decimal(f64::NAN), None);
        assert_eq!(to_decimal(-0.0), None);
        assert_eq!(
            decimal_column(&[1.5, 2.25, 3.0]),
            Some((vec![150, 225, 300], 2))
        );
        // A counter: steady increments pick delta-of-delta and cost ~1 byte each before zstd.
        let mut b = Vec::new();
        let counter: Vec<i64> = (0..100).map(|i| 1000 + 300 * i).collect();
        put_ints(&mut b, &counter, false);
        assert_eq!(b[0], INTS_DOD);
        assert!(b.len() < 110, "{}", b.len());
        let mut back = Vec::new();
        get_ints(&mut Reader::new(&b), 100, &mut back, false).unwrap();
        assert_eq!(back, counter);
        // Every mode round-trips, including extremes and short columns.
        for ints in [
            vec![i64::MIN, i64::MAX, 0, -1, 5],
            vec![7],
            vec![3, 3],
            vec![-5, 10, -20, 40],
        ] {
            for mode in [INTS_DELTA, INTS_DOD, INTS_RAW] {
                let z = int_transform(&ints, mode);
                assert_eq!(z.len(), ints.len());
            }
            for packed in [false, true] {
                let mut b = Vec::new();
                put_ints(&mut b, &ints, packed);
                let mut back = Vec::new();
                get_ints(&mut Reader::new(&b), ints.len(), &mut back, packed).unwrap();
                assert_eq!(back, ints);
            }
        }
    }

    #[test]
    fn histograms_round_trip() {
        let h = Histogram {
            schema: 3,
            zero_threshold: 1e-128,
            zero_count: 2.0,
            count: 10.0,
            sum: 33.5,
            positive_spans: vec![
                Span {
                    offset: -2,
                    length: 2,
                },
                Span {
                    offset: 3,
                    length: 1,
                },
            ],
            positive_buckets: vec![1.0, 2.0, 5.0],
            negative_spans: vec![Span {
                offset: 0,
                length: 1,
            }],
            negative_buckets: vec![0.0],
            custom_values: vec![],
            reset_hint: ResetHint::Gauge,
        };
        let hs = vec![
            HistogramSample {
                t: 5,
                h: Arc::new(h.clone()),
            },
            HistogramSample {
                t: 65,
                h: Arc::new(Histogram {
                    schema: -53,
                    custom_values: vec![1.0, 5.0],
                    ..h
                }),
            },
        ];
        let mut buf = Vec::new();
        encode_histograms(&mut buf, &hs);
        let mut out = Vec::new();
        decode_histograms(&mut Reader::new(&buf), 0, 100, &mut out).unwrap();
        assert_eq!(out, hs);
        assert!(decode_histograms(
            &mut Reader::new(&buf[..buf.len() - 3]),
            0,
            100,
            &mut Vec::new()
        )
        .is_err());
    }
}
