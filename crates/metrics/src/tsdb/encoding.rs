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
/// Decimal integers plus a few exact exceptions (values such as `499.57000000000005` that float
/// arithmetic produces now and then, which would otherwise send the whole column to XOR).
const VALUES_DECIMAL_EXC: u8 = 2;
const INTS_DELTA: u8 = 0;
const INTS_DOD: u8 = 1;
const INTS_RAW: u8 = 2;
/// Residuals from a straight line `x0 + i·slope`, minus their minimum: counters with a steady rate
/// and noisy increments cost the entropy of the noise, not of its differences (deltas add the noise
/// of two samples).
const INTS_LINEAR: u8 = 3;
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

/// [`decimal_column`] of a single value, without allocating.
pub(crate) fn single_decimal(v: f64) -> Option<(i64, usize)> {
    let (m, s) = to_decimal(v)?;
    (from_decimal(m, s).to_bits() == v.to_bits()).then_some((m, s))
}

/// Values as integers at one common decimal scale (VictoriaMetrics' idea), or `None` when some value
/// is not exactly decimal (NaN, ±Inf, −0, too many digits): then the caller falls back to XOR.
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
    // n·H = n·log2 n − Σ c·log2 c, with c·log2 c from a table: every candidate mode of every column
    // of a block is costed, so this runs millions of times per block.
    static CLOG: std::sync::OnceLock<Box<[f64]>> = std::sync::OnceLock::new();
    let table = CLOG.get_or_init(|| {
        (0..1024u32)
            .map(|c| {
                if c == 0 {
                    0.0
                } else {
                    f64::from(c) * f64::from(c).log2()
                }
            })
            .collect()
    });
    let clog = |c: u32| {
        table
            .get(c as usize)
            .copied()
            .unwrap_or_else(|| f64::from(c) * f64::from(c).log2())
    };
    let n = vs.len() as f64;
    if vs.is_empty() {
        return 0.0;
    }
    let mut total = 0.0;
    for plane in 0..bits.div_ceil(8) {
        let mut counts = [0u32; 256];
        for &v in vs {
            counts[((v >> (8 * plane)) & 0xff) as usize] += 1;
        }
        let (mut sum, mut k) = (0.0, 0u32);
        for &c in &counts {
            if c > 0 {
                sum += clog(c);
                k += 1;
            }
        }
        let nh = n * n.log2() - sum;
        // Miller–Madow correction: a ~120-value sample underestimates the entropy of a plane.
        total += (nh + f64::from(k - 1) / (2.0 * std::f64::consts::LN_2)) / 8.0;
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
        INTS_LINEAR => 3,
        _ => 2,
    }
}

/// `[x0, slope, mid, r1 − mid, …]` (mid: the middle of the residuals' range) with `ri = xi − x0 − i·slope` (wrapping, so exactly invertible);
/// `None` for fewer than 3 values.
fn linear_transform(ints: &[i64]) -> Option<Vec<i64>> {
    let n = ints.len();
    if n < 3 {
        return None;
    }
    let x0 = ints[0];
    let span = i128::from(ints[n - 1]) - i128::from(x0);
    let d = (n - 1) as i128;
    // Candidate slopes: through the end points (exact for steady counters), least squares (robust
    // to noisy end points), and zero (a gauge: plain values minus their minimum). The one with the
    // narrowest residual range wins.
    let ends = i64::try_from((span + span.signum() * d / 2) / d).ok()?;
    let ls = {
        let mi = (n - 1) as f64 / 2.0;
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for (i, &x) in ints.iter().enumerate() {
            let di = i as f64 - mi;
            num += di * (x.wrapping_sub(x0)) as f64;
            den += di * di;
        }
        let s = (num / den).round();
        if s.is_finite() && s.abs() < 9.0e18 {
            s as i64
        } else {
            ends
        }
    };
    let resid = |slope: i64, i: usize| {
        ints[i]
            .wrapping_sub(x0)
            .wrapping_sub((i as i64).wrapping_mul(slope))
    };
    let range = |slope: i64| {
        let (lo, hi) = (1..n).fold((i64::MAX, i64::MIN), |(lo, hi), i| {
            let r = resid(slope, i);
            (lo.min(r), hi.max(r))
        });
        (hi as i128 - lo as i128, lo)
    };
    let (_, slope, min) = [ends, ls, 0]
        .into_iter()
        .map(|s| {
            let (r, lo) = range(s);
            // Centred, so that the zigzag of the body needs no extra bit.
            (r, s, (i128::from(lo) + r / 2) as i64)
        })
        .min_by_key(|c| c.0)?;
    let resid = |i: usize| resid(slope, i);
    let mut z = Vec::with_capacity(n + 2);
    z.extend([x0, slope, min]);
    z.extend((1..n).map(|i| resid(i).wrapping_sub(min)));
    Some(z)
}

/// Width byte of a radix-packed body (beyond any bit width ≤ 64, plane count ≤ 8 or 0x80 flag).
const RADIX_PACKED: u8 = 0xff;

/// How many values below `r` (≥ 2) fit one u64 as base-`r` digits.
fn radix_group(r: u64) -> usize {
    let (mut k, mut p) = (0usize, 1u128);
    while p * u128::from(r) <= 1u128 << 64 {
        p *= u128::from(r);
        k += 1;
    }
    k.max(1)
}

/// Bits of a group of `m` base-`r` digits (`r^m − 1`).
fn radix_bits(r: u64, m: usize) -> u32 {
    let p = (0..m).fold(1u128, |p, _| p.saturating_mul(u128::from(r)));
    128 - (p - 1).leading_zeros()
}

/// Total bits of `n` values radix-packed below `r`.
fn radix_total_bits(r: u64, n: usize) -> u64 {
    let k = radix_group(r);
    (n / k) as u64 * u64::from(radix_bits(r, k)) + u64::from(radix_bits(r, n % k))
}

/// Values below `r` as base-`r` numbers of `radix_group(r)` digits, each in just the bits it needs:
/// log2(r) bits per value instead of a whole bit (a counter's increments noise over 17 values costs
/// 4.09 bits, not 5).
fn put_radix(buf: &mut Vec<u8>, vs: &[u64], r: u64) {
    let k = radix_group(r);
    let mut w = BitWriter::default();
    for chunk in vs.chunks(k) {
        let acc = chunk
            .iter()
            .rev()
            .fold(0u64, |acc, &v| acc.wrapping_mul(r).wrapping_add(v));
        w.write_bits(acc, radix_bits(r, chunk.len()));
    }
    buf.extend_from_slice(&w.buf);
}

fn get_radix(r: &mut Reader<'_>, n: usize, radix: u64, out: &mut Vec<u64>) -> Result<(), Error> {
    if radix < 2 {
        return Err(corrupt("radix"));
    }
    let bytes = r.bytes(
        usize::try_from(radix_total_bits(radix, n).div_ceil(8)).map_err(|_| corrupt("radix"))?,
    )?;
    let mut br = BitReader::new(bytes);
    let k = radix_group(radix);
    let mut left = n;
    while left > 0 {
        let m = left.min(k);
        let mut acc = br
            .read_bits(radix_bits(radix, m))
            .ok_or_else(|| corrupt("radix packed integers"))?;
        for _ in 0..m {
            out.push(acc % radix);
            acc /= radix;
        }
        left -= m;
    }
    Ok(())
}

/// Integers as raw values, deltas or deltas-of-deltas, whichever needs the fewest significant bits
/// (gauges: raw or delta; counters with a steady rate: dod ≈ 0). A common factor of the body is
/// divided out (byte gauges move in pages: multiples of 4096). The body is then written as byte
/// planes of a fixed width (all low bytes, then all second bytes, …): each plane has its own byte
/// distribution, so zstd's entropy coder gets close to the values' real entropy, where interleaved
/// varint bytes mix high-entropy low bytes with near-constant high bytes. With `packed`, the body is
/// instead bit-packed at the width of its largest value (sealed head chunks: no zstd behind them).
fn put_ints(buf: &mut Vec<u8>, ints: &[i64], packed: bool) {
    // Every mode is costed as it would be written: its header varints plus its body, bit-packed
    // (`packed`: sealed head chunks) or the cheaper of bits and byte planes (blocks: zstd lands
    // ~15% above the planes' order-0 entropy). Bit lengths alone mislead: deltas-of-deltas of a
    // noisy counter have short codes but more entropy than its linear residuals.
    struct Cand {
        cost: f64,
        mode: u8,
        head: Vec<i64>,
        g: u64,
        rest: Vec<u64>,
        bits: u32,
        use_bits: bool,
    }
    let mut best: Option<Cand> = None;
    let linear = linear_transform(ints);
    // In blocks, raw values are left to the linear mode (slope 0 is one of its candidates): the
    // high bytes of absolute values differ between the columns of a page, which a per-column
    // entropy estimate cannot see, while residuals minus their minimum share one distribution.
    let raw = (packed || linear.is_none()).then(|| int_transform(ints, INTS_RAW));
    let modes = [
        (INTS_DELTA, Some(int_transform(ints, INTS_DELTA))),
        (INTS_DOD, Some(int_transform(ints, INTS_DOD))),
        (INTS_RAW, raw),
        (INTS_LINEAR, linear),
    ];
    for (mode, z) in modes {
        let Some(z) = z else { continue };
        let h = int_header(mode).min(z.len());
        let head_cost: f64 = z[..h]
            .iter()
            .map(|&v| f64::from((64 - zigzag(v).leading_zeros()).div_ceil(7).max(1)))
            .sum();
        let body = &z[h..];
        let g = body
            .iter()
            .fold(0u64, |g, &v| gcd(g, v.unsigned_abs()))
            .max(1);
        // `g` divides every value exactly, and |v / g| ≤ |v|, so no overflow.
        let rest: Vec<u64> = body
            .iter()
            .map(|&v| zigzag(if g > 1 { v / g as i64 } else { v }))
            .collect();
        let max = rest.iter().copied().max().unwrap_or(0);
        let bits = 64 - max.leading_zeros();
        let bits_cost = (rest.len() * bits as usize) as f64 / 8.0;
        let radix = max
            .checked_add(1)
            .filter(|r| *r >= 3 && !r.is_power_of_two());
        let radix_cost = radix.map_or(f64::INFINITY, |r| {
            radix_total_bits(r, rest.len()) as f64 / 8.0
        });
        let (body_cost, use_bits) = if radix_cost < bits_cost
            && (packed || rest.is_empty() || radix_cost < 1.15 * planes_entropy(&rest, bits))
        {
            (radix_cost, true)
        } else if packed || rest.is_empty() {
            (bits_cost, true)
        } else {
            // Byte planes win when bytes repeat (zstd finds them); fixed-width bits win for
            // near-uniform noise, where zstd's byte-wise entropy coder cannot go below whole-byte
            // symbols of a plane (flag 0x80 in the width byte).
            // Each plane costs zstd at least a few bytes, even when constant.
            let planes = 1.15 * planes_entropy(&rest, bits) + 4.0 * f64::from(bits.div_ceil(8));
            if bits_cost < planes {
                (bits_cost, true)
            } else {
                (planes, false)
            }
        };
        let cost = head_cost + body_cost;
        if best.as_ref().is_none_or(|b| cost < b.cost) {
            best = Some(Cand {
                cost,
                mode,
                head: z[..h].to_vec(),
                g,
                rest,
                bits,
                use_bits,
            });
        }
    }
    let Some(c) = best else { return };
    buf.push(c.mode);
    for &v in &c.head {
        put_varint(buf, v);
    }
    if c.rest.is_empty() {
        return;
    }
    put_uvarint(buf, c.g);
    let max = c.rest.iter().copied().max().unwrap_or(0);
    if c.use_bits
        && max.checked_add(1).is_some_and(|r| {
            r >= 3
                && !r.is_power_of_two()
                && radix_total_bits(r, c.rest.len()) < (c.rest.len() * c.bits as usize) as u64
        })
    {
        buf.push(RADIX_PACKED);
        put_uvarint(buf, max + 1);
        put_radix(buf, &c.rest, max + 1);
        return;
    }
    if c.use_bits {
        buf.push(if packed {
            c.bits as u8
        } else {
            0x80 | c.bits as u8
        });
        let mut w = BitWriter::default();
        w.buf.reserve((c.rest.len() * c.bits as usize).div_ceil(8));
        for &v in &c.rest {
            w.write_bits(v, c.bits);
        }
        buf.extend_from_slice(&w.buf);
        return;
    }
    let width = c.bits.div_ceil(8) as usize;
    buf.push(width as u8);
    buf.reserve(c.rest.len() * width);
    for plane in 0..width {
        buf.extend(c.rest.iter().map(|&v| (v >> (8 * plane)) as u8));
    }
}

fn get_ints(r: &mut Reader<'_>, n: usize, out: &mut Vec<i64>, packed: bool) -> Result<(), Error> {
    if n == 0 {
        return Ok(());
    }
    let mode = r.u8()?;
    if mode > INTS_LINEAR || (mode == INTS_LINEAR && n < 3) {
        return Err(corrupt("integer column mode"));
    }
    let (h, rest) = if mode == INTS_LINEAR {
        (3, n - 1)
    } else {
        let h = int_header(mode).min(n);
        (h, n - h)
    };
    let mut z = Vec::with_capacity(h + rest);
    for _ in 0..h {
        z.push(r.varint()?);
    }
    if rest > 0 {
        let g = r.uvarint()?.max(1) as i64;
        let width = usize::from(r.u8()?);
        if width == usize::from(RADIX_PACKED) {
            let radix = r.uvarint()?;
            let mut vs = Vec::with_capacity(rest);
            get_radix(r, rest, radix, &mut vs)?;
            z.extend(vs.into_iter().map(|v| unzigzag(v).wrapping_mul(g)));
        } else {
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
    }
    if mode == INTS_LINEAR {
        let (x0, slope, min) = (z[0], z[1], z[2]);
        out.push(x0);
        out.extend(z[3..].iter().enumerate().map(|(i, &v)| {
            x0.wrapping_add(((i + 1) as i64).wrapping_mul(slope))
                .wrapping_add(v.wrapping_add(min))
        }));
        return Ok(());
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

/// Like [`decimal_column`] when at most half of the values are not exactly decimal at the
/// scale that covers the rest: those are returned as exception indices (their slot in the integer
/// column holds the nearest decimal, so deltas stay small).
fn decimal_with_exceptions(values: &[f64]) -> Option<(Vec<i64>, usize, Vec<usize>)> {
    let dec: Vec<Option<(i64, usize)>> = values.iter().map(|&v| to_decimal(v)).collect();
    let mut hist = [0usize; POW10.len()];
    for &(_, s) in dec.iter().flatten() {
        hist[s] += 1;
    }
    let need = values.len() - values.len() / 2;
    let mut acc = 0;
    let scale = hist.iter().position(|&c| {
        acc += c;
        acc >= need
    })?;
    let mut ints = Vec::with_capacity(values.len());
    let mut exceptions = Vec::new();
    let mut prev = 0i64;
    for (i, (&v, d)) in values.iter().zip(&dec).enumerate() {
        let m = d
            .filter(|&(_, s)| s <= scale)
            .and_then(|(m, s)| m.checked_mul(10i64.pow((scale - s) as u32)))
            .filter(|&m| m.abs() < MAX_MANTISSA && from_decimal(m, scale).to_bits() == v.to_bits());
        match m {
            Some(m) => {
                ints.push(m);
                prev = m;
            }
            None => {
                exceptions.push(i);
                let near = (v * POW10[scale]).round();
                ints.push(if near.is_finite() && near.abs() < MAX_MANTISSA as f64 {
                    near as i64
                } else {
                    prev
                });
            }
        }
    }
    (exceptions.len() <= values.len() / 2).then_some((ints, scale, exceptions))
}

/// Encodes the value column of float samples, without a count: decimal integers when every value is
/// exactly decimal, else XOR.
pub(crate) fn encode_values(buf: &mut Vec<u8>, samples: &[Sample]) {
    if samples.is_empty() {
        return;
    }
    let values: Vec<f64> = samples.iter().map(|s| s.v).collect();
    if let Some((ints, scale)) = decimal_column(&values) {
        buf.push(VALUES_DECIMAL);
        buf.push(scale as u8);
        put_ints(buf, &ints, false);
        return;
    }
    match decimal_with_exceptions(&values) {
        Some((ints, scale, exceptions)) => {
            buf.push(VALUES_DECIMAL_EXC);
            buf.push(scale as u8);
            put_uvarint(buf, exceptions.len() as u64);
            // Each exception as the difference of its bits from the decimal in its slot: float
            // artefacts are an ulp or two away, so this is a byte or two, not eight.
            let mut prev = 0;
            for i in exceptions {
                put_uvarint(buf, (i - prev) as u64);
                prev = i;
                let near = from_decimal(ints[i], scale).to_bits() as i64;
                put_varint(buf, (values[i].to_bits() as i64).wrapping_sub(near));
            }
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
        VALUES_DECIMAL_EXC => {
            let scale = usize::from(r.u8()?);
            if scale >= POW10.len() {
                return Err(corrupt("decimal scale"));
            }
            let k = r.len(2)?;
            let mut exceptions = Vec::with_capacity(k);
            let mut at = 0usize;
            for _ in 0..k {
                at = at
                    .checked_add(usize::try_from(r.uvarint()?).unwrap_or(usize::MAX))
                    .filter(|&i| i < n)
                    .ok_or_else(|| corrupt("value exception index"))?;
                exceptions.push((at, r.varint()?));
            }
            let mut ints = Vec::with_capacity(n);
            get_ints(r, n, &mut ints, false)?;
            let base = out.len();
            out.extend(ints.into_iter().map(|m| from_decimal(m, scale)));
            for (i, diff) in exceptions {
                let near = out[base + i].to_bits() as i64;
                out[base + i] = f64::from_bits(near.wrapping_add(diff) as u64);
            }
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
            // Mostly decimal with a few float-arithmetic artefacts and specials: exceptions.
            (0..120)
                .map(|i| match i % 40 {
                    7 => 499.5 + 0.07,
                    20 => f64::NAN,
                    _ => 499.5 + (i % 13) as f64 / 100.0,
                })
                .collect(),
            // Counters with noisy increments (linear residuals), steep and negative slopes.
            (0..120)
                .map(|i| 1e6 + i as f64 * 37.0 + ((i * 7919) % 17) as f64)
                .collect(),
            (0..120)
                .map(|i| -(i as f64) * 1e12 + ((i * 31) % 5) as f64)
                .collect(),
            vec![1.0, 2.0, 4.0],
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
    fn radix_packing_round_trips_and_never_panics() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for r in [3u64, 5, 17, 1000, 1001, 65_537, (1 << 32) + 1, u64::MAX] {
            for n in [1usize, 2, 14, 15, 16, 31, 120, 121] {
                let vs: Vec<u64> = (0..n)
                    .map(|i| if i == 0 { r - 1 } else { next() % r })
                    .collect();
                let mut b = Vec::new();
                put_radix(&mut b, &vs, r);
                let mut back = Vec::new();
                get_radix(&mut Reader::new(&b), n, r, &mut back).unwrap();
                assert_eq!(back, vs, "r={r} n={n}");
            }
        }
        // Whole columns through put_ints/get_ints, blocks and packed head chunks.
        for len in [3usize, 7, 119, 120] {
            for spread in [3i64, 17, 1000, 1 << 20] {
                let ints: Vec<i64> = (0..len)
                    .map(|i| 5_000 + 37 * i as i64 + (next() % spread as u64) as i64)
                    .collect();
                for packed in [false, true] {
                    let mut b = Vec::new();
                    put_ints(&mut b, &ints, packed);
                    let mut back = Vec::new();
                    get_ints(&mut Reader::new(&b), len, &mut back, packed).unwrap();
                    assert_eq!(back, ints);
                    // Corrupted bytes: errors or garbage, never a panic.
                    for _ in 0..50 {
                        let mut c = b.clone();
                        let i = (next() as usize) % c.len();
                        c[i] = next() as u8;
                        let _ = get_ints(&mut Reader::new(&c), len, &mut Vec::new(), packed);
                        c.truncate((next() as usize) % c.len());
                        let _ = get_ints(&mut Reader::new(&c), len, &mut Vec::new(), packed);
                    }
                }
            }
        }
    }

    #[test]
    fn linear_and_exception_modes() {
        let noise = |i: u64| {
            let x = i.wrapping_mul(0xBF58_476D_1CE4_E5B9) ^ 0x1234_5678;
            ((x ^ (x >> 31)) % 17) as i64
        };
        let counter: Vec<i64> = (0..120u64)
            .map(|i| 1000 + 37 * i as i64 + noise(i))
            .collect();
        let mut b = Vec::new();
        put_ints(&mut b, &counter, false);
        assert_eq!(b[0], INTS_LINEAR);
        let mut back = Vec::new();
        get_ints(&mut Reader::new(&b), counter.len(), &mut back, false).unwrap();
        assert_eq!(back, counter);
        for ints in [
            vec![i64::MIN, i64::MAX, 0, 5],
            vec![i64::MAX, i64::MIN, i64::MAX],
            vec![3, 1, 2],
        ] {
            for packed in [false, true] {
                let z = linear_transform(&ints).unwrap();
                let mut b = vec![INTS_LINEAR];
                for &v in &z[..3] {
                    put_varint(&mut b, v);
                }
                put_uvarint(&mut b, 1);
                b.push(if packed { 64 } else { 8 });
                if packed {
                    let mut w = BitWriter::default();
                    for &v in &z[3..] {
                        w.write_bits(zigzag(v), 64);
                    }
                    b.extend_from_slice(&w.buf);
                } else {
                    let rest: Vec<u64> = z[3..].iter().map(|&v| zigzag(v)).collect();
                    for plane in 0..8 {
                        b.extend(rest.iter().map(|&v| (v >> (8 * plane)) as u8));
                    }
                }
                let mut back = Vec::new();
                get_ints(&mut Reader::new(&b), ints.len(), &mut back, packed).unwrap();
                assert_eq!(back, ints);
            }
        }
        let vals: Vec<f64> = (0..16)
            .map(|i| if i == 3 { 0.1 + 0.2 } else { i as f64 / 10.0 })
            .collect();
        let (ints, scale, exc) = decimal_with_exceptions(&vals).unwrap();
        assert_eq!((scale, exc), (1, vec![3]));
        assert_eq!(ints[3], 3);
        let art = |v: f64| f64::from_bits(v.to_bits() + 1);
        assert!(decimal_with_exceptions(&[art(0.3), art(0.7), art(1.1), 1.0, 2.0]).is_none());
        for v in [0.0, 1.5, 1e300, -2.25, 0.1 + 0.2, f64::NAN] {
            assert_eq!(
                single_decimal(v),
                decimal_column(&[v]).map(|(m, s)| (m[0], s))
            );
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

#[cfg(test)]
mod bench_shape {
    use super::*;

    /// The value generator of `heimdall bench ingest`.
    fn value(series: usize, k: usize, counter: bool) -> f64 {
        let mut x = (series as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (k as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 31;
        if counter {
            (series as f64) * 1000.0 + (k as f64) * 37.0 + (x % 17) as f64
        } else {
            ((series % 1000) as f64) * 1.5 + (x % 1000) as f64 / 100.0
        }
    }

    /// Bytes per sample of the bench's value columns, by kind (run with `--ignored --nocapture`).
    #[test]
    #[ignore]
    fn bench_value_columns() {
        for counter in [true, false] {
            let t0 = std::time::Instant::now();
            let mut all = Vec::new();
            let mut kinds = [0usize; 3];
            let mut modes = [0usize; 4];
            for s in 0..2000 {
                let samples: Vec<Sample> = (0..120)
                    .map(|k| Sample {
                        t: k as i64 * 15_000,
                        v: value(s, k, counter),
                    })
                    .collect();
                let mut b = Vec::new();
                encode_values(&mut b, &samples);
                kinds[b[0] as usize] += 1;
                if b[0] == VALUES_DECIMAL {
                    modes[b[2] as usize] += 1;
                }
                all.extend_from_slice(&b);
            }
            let took = t0.elapsed();
            let z = zstd::bulk::compress(&all, 9).unwrap();
            println!(
                "  encode: {:.2} µs/column",
                took.as_secs_f64() * 1e6 / 2000.0
            );
            println!(
                "counter={counter}: raw {:.2} B/sample, zstd {:.2} B/sample, kinds {kinds:?}, modes {modes:?}",
                all.len() as f64 / 240_000.0,
                z.len() as f64 / 240_000.0
            );
        }
    }
}
