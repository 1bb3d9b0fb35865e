//! Binary encodings of the log store: varints, the WAL record, sealed chunks and the block index.
//! Formats are described in `crates/logs/DESIGN.md`; every decoder bounds what it allocates.

use std::collections::HashMap;
use std::sync::Arc;

use common::{Label, Labels};

use crate::model::{Batch, Entry, StreamPush};
use crate::Error;

/// Version byte of WAL records.
pub(crate) const WAL_RECORD_V1: u8 = 1;
/// Version byte of sealed chunks.
pub(crate) const CHUNK_V1: u8 = 1;
/// Version byte of the block index.
pub(crate) const INDEX_V1: u8 = 1;
/// Magic at the start of the block index file.
pub(crate) const INDEX_MAGIC: &[u8; 4] = b"HLGI";
/// Largest decompressed chunk payload a decoder accepts (corrupt input must not OOM us).
const MAX_CHUNK_PAYLOAD: u64 = 256 << 20;
/// Largest decompressed block index a decoder accepts.
const MAX_INDEX_BYTES: usize = 1 << 30;
const FLAG_META: u8 = 1;

// ------------------------------------------------------------------------------------------------
// Varints

#[inline]
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
pub(crate) fn put_ivarint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

#[inline]
pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A bounds-checked cursor over encoded bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| corrupt("unexpected end of data"))?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub(crate) fn uvarint(&mut self) -> Result<u64, Error> {
        let mut v = 0u64;
        let mut shift = 0u32;
        loop {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| corrupt("truncated varint"))?;
            self.pos += 1;
            if shift >= 64 {
                return Err(corrupt("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
        }
    }

    #[inline]
    pub(crate) fn ivarint(&mut self) -> Result<i64, Error> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    /// A count that must not exceed the bytes left (each counted item takes at least one byte).
    pub(crate) fn count(&mut self) -> Result<usize, Error> {
        let n = self.uvarint()?;
        if n > (self.buf.len() - self.pos) as u64 {
            return Err(corrupt("count exceeds the data"));
        }
        Ok(n as usize)
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| corrupt("length exceeds the data"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let n = self.uvarint()?;
        self.take(usize::try_from(n).map_err(|_| corrupt("length overflows"))?)
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, Error> {
        std::str::from_utf8(self.bytes()?).map_err(|_| corrupt("string is not utf-8"))
    }
}

pub(crate) fn corrupt(msg: impl Into<String>) -> Error {
    Error::Corrupt(msg.into())
}

fn put_labels(out: &mut Vec<u8>, labels: &Labels) {
    put_uvarint(out, labels.len() as u64);
    for l in labels {
        put_bytes(out, l.name.as_bytes());
        put_bytes(out, l.value.as_bytes());
    }
}

fn read_labels(r: &mut Reader<'_>) -> Result<Labels, Error> {
    let n = r.count()?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str()?;
        let value = r.str()?;
        v.push(Label::new(name, value));
    }
    if !v.windows(2).all(|w| w[0].name < w[1].name) {
        return Err(corrupt("labels are not sorted"));
    }
    Ok(Labels::from_sorted(v))
}

// ------------------------------------------------------------------------------------------------
// WAL record: u8 version, uvarint streams; per stream labels, uvarint entries; per entry ivarint ts
// delta (from the previous entry of the stream, the first from 0), bytes line, uvarint pairs,
// (bytes name, bytes value) per pair.

/// Encodes the entries `accepted[k]` (indexes into `streams[k].entries`) of each stream.
pub(crate) fn encode_wal_record(streams: &[StreamPush], accepted: &[Vec<u32>]) -> Vec<u8> {
    let mut size = 16;
    for (sp, acc) in streams.iter().zip(accepted) {
        if acc.is_empty() {
            continue;
        }
        size += 16
            + sp.labels
                .iter()
                .map(|l| l.name.len() + l.value.len() + 4)
                .sum::<usize>();
        for &i in acc {
            let e = &sp.entries[i as usize];
            size += 16 + e.line.len();
            size += e
                .metadata
                .iter()
                .map(|(n, v)| n.len() + v.len() + 4)
                .sum::<usize>();
        }
    }
    let mut out = Vec::with_capacity(size);
    out.push(WAL_RECORD_V1);
    put_uvarint(
        &mut out,
        accepted.iter().filter(|a| !a.is_empty()).count() as u64,
    );
    for (sp, acc) in streams.iter().zip(accepted) {
        if acc.is_empty() {
            continue;
        }
        put_labels(&mut out, &sp.labels);
        put_uvarint(&mut out, acc.len() as u64);
        let mut prev = 0i64;
        for &i in acc {
            let e = &sp.entries[i as usize];
            put_ivarint(&mut out, e.ts.wrapping_sub(prev));
            prev = e.ts;
            put_bytes(&mut out, e.line.as_bytes());
            put_uvarint(&mut out, e.metadata.len() as u64);
            for (n, v) in &e.metadata {
                put_bytes(&mut out, n.as_bytes());
                put_bytes(&mut out, v.as_bytes());
            }
        }
    }
    out
}

/// Decodes a WAL record into the pushes it holds.
pub(crate) fn decode_wal_record(rec: &[u8]) -> Result<Vec<StreamPush>, Error> {
    let mut r = Reader::new(rec);
    let v = r.u8()?;
    if v != WAL_RECORD_V1 {
        return Err(corrupt(format!("unknown logs wal record version {v}")));
    }
    let n = r.count()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let labels = read_labels(&mut r)?;
        let ne = r.count()?;
        let mut entries = Vec::with_capacity(ne);
        let mut prev = 0i64;
        for _ in 0..ne {
            let ts = prev.wrapping_add(r.ivarint()?);
            prev = ts;
            let line = r.str()?.to_string();
            let nm = r.count()?;
            let mut metadata = Vec::with_capacity(nm);
            for _ in 0..nm {
                let name = r.str()?.to_string();
                let value = r.str()?.to_string();
                metadata.push((name, value));
            }
            entries.push(Entry { ts, line, metadata });
        }
        out.push(StreamPush { labels, entries });
    }
    if !r.is_empty() {
        return Err(corrupt("trailing bytes after logs wal record"));
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------------
// Sealed chunks

/// Header fields of a sealed chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkHeader {
    pub entries: u32,
    pub min_ts: i64,
    pub max_ts: i64,
    /// Sum of line lengths (the decompressed size of the lines frame).
    pub raw_bytes: u64,
    /// Decompressed size of the columns frame.
    cols_len: u64,
    /// Compressed size of the columns frame.
    cols_frame_len: u64,
    flags: u8,
}

/// Reorders `b` by timestamp (stable: equal timestamps keep push order).
pub(crate) fn sort_batch(b: &Batch) -> Batch {
    let mut perm: Vec<u32> = (0..b.len() as u32).collect();
    perm.sort_by_key(|&i| b.ts[i as usize]);
    let mut out = Batch::default();
    out.ts.reserve(b.len());
    out.line_ends.reserve(b.len());
    out.lines.reserve(b.lines.len());
    out.meta_ends.reserve(b.len());
    out.meta_refs.reserve(b.meta_refs.len());
    for i in perm {
        let i = i as usize;
        out.push(b.ts[i], b.line(i), b.metadata(i).iter());
    }
    out
}

fn compress(data: &[u8], level: i32) -> Result<Vec<u8>, Error> {
    zstd::bulk::compress(data, level).map_err(|e| Error::Io {
        context: "compress log chunk".into(),
        source: e,
    })
}

/// Compresses `b` (sorted by timestamp, non-empty) into a self-contained chunk: an uncompressed
/// header (version, entries, time range, line bytes, columns length and compressed length, flags),
/// a zstd frame of the columns (timestamp deltas, line lengths, the metadata symbol table and
/// per-entry pair indexes), then a zstd frame of the line bytes back to back — separate, so that a
/// scan decompresses lines straight into its batch.
pub(crate) fn encode_chunk(b: &Batch, level: i32) -> Result<(Vec<u8>, ChunkHeader), Error> {
    debug_assert!(b.ts.windows(2).all(|w| w[0] <= w[1]));
    let n = b.len();
    let min_ts = b.ts.first().copied().unwrap_or(0);
    let max_ts = b.ts.last().copied().unwrap_or(0);
    let has_meta = !b.meta_refs.is_empty();
    let mut p = Vec::with_capacity(n * 5 + 64);
    let mut prev = min_ts;
    for &t in &b.ts {
        put_uvarint(&mut p, t.wrapping_sub(prev) as u64);
        prev = t;
    }
    let mut start = 0u32;
    for &e in &b.line_ends {
        put_uvarint(&mut p, u64::from(e - start));
        start = e;
    }
    if has_meta {
        let mut syms: HashMap<&str, u32> = HashMap::new();
        let mut order: Vec<&str> = Vec::new();
        let mut ids = Vec::with_capacity(b.meta_refs.len() * 2);
        for &r in &b.meta_refs {
            let (name, value) = &b.meta_table[r as usize];
            for s in [&**name, &**value] {
                let id = *syms.entry(s).or_insert_with(|| {
                    order.push(s);
                    order.len() as u32 - 1
                });
                ids.push(id);
            }
        }
        put_uvarint(&mut p, order.len() as u64);
        for s in &order {
            put_bytes(&mut p, s.as_bytes());
        }
        let mut ms = 0usize;
        for &me in &b.meta_ends {
            let me = me as usize;
            put_uvarint(&mut p, (me - ms) as u64);
            for k in ms..me {
                put_uvarint(&mut p, u64::from(ids[2 * k]));
                put_uvarint(&mut p, u64::from(ids[2 * k + 1]));
            }
            ms = me;
        }
    }
    let cols = compress(&p, level)?;
    let lines = compress(&b.lines, level)?;
    let h = ChunkHeader {
        entries: n as u32,
        min_ts,
        max_ts,
        raw_bytes: b.lines.len() as u64,
        cols_len: p.len() as u64,
        cols_frame_len: cols.len() as u64,
        flags: if has_meta { FLAG_META } else { 0 },
    };
    let mut out = Vec::with_capacity(cols.len() + lines.len() + 40);
    out.push(CHUNK_V1);
    put_uvarint(&mut out, u64::from(h.entries));
    put_ivarint(&mut out, h.min_ts);
    put_uvarint(&mut out, h.max_ts.wrapping_sub(h.min_ts) as u64);
    put_uvarint(&mut out, h.raw_bytes);
    put_uvarint(&mut out, h.cols_len);
    put_uvarint(&mut out, h.cols_frame_len);
    out.push(h.flags);
    out.extend_from_slice(&cols);
    out.extend_from_slice(&lines);
    Ok((out, h))
}

fn read_header(r: &mut Reader<'_>) -> Result<ChunkHeader, Error> {
    let v = r.u8()?;
    if v != CHUNK_V1 {
        return Err(corrupt(format!("unknown log chunk version {v}")));
    }
    let entries =
        u32::try_from(r.uvarint()?).map_err(|_| corrupt("chunk entry count overflows"))?;
    let min_ts = r.ivarint()?;
    let max_ts = min_ts.wrapping_add(r.uvarint()? as i64);
    let raw_bytes = r.uvarint()?;
    let cols_len = r.uvarint()?;
    let cols_frame_len = r.uvarint()?;
    let flags = r.u8()?;
    if raw_bytes > MAX_CHUNK_PAYLOAD || cols_len > MAX_CHUNK_PAYLOAD {
        return Err(corrupt(format!(
            "chunk of {raw_bytes} line bytes and {cols_len} column bytes exceeds {MAX_CHUNK_PAYLOAD}"
        )));
    }
    Ok(ChunkHeader {
        entries,
        min_ts,
        max_ts,
        raw_bytes,
        cols_len,
        cols_frame_len,
        flags,
    })
}

/// Decode state reused across chunks, so that a scan allocates per chunk at most its symbols.
pub(crate) struct Decoder {
    zstd: zstd::bulk::Decompressor<'static>,
    cols: Vec<u8>,
    lines: Vec<u8>,
    ts: Vec<i64>,
    lens: Vec<u32>,
    syms: Vec<Arc<str>>,
    /// Symbol pairs of the current chunk already interned in the output batch.
    pairs: Vec<((usize, usize), u32)>,
}

impl Decoder {
    pub(crate) fn new() -> Result<Self, Error> {
        Ok(Self {
            zstd: zstd::bulk::Decompressor::new().map_err(|e| Error::Io {
                context: "create zstd decompressor".into(),
                source: e,
            })?,
            cols: Vec::new(),
            lines: Vec::new(),
            ts: Vec::new(),
            lens: Vec::new(),
            syms: Vec::new(),
            pairs: Vec::new(),
        })
    }

    /// Appends the entries of `chunk` with `start <= ts < end` to `out`; returns how many.
    pub(crate) fn decode_into(
        &mut self,
        chunk: &[u8],
        start: i64,
        end: i64,
        out: &mut Batch,
    ) -> Result<usize, Error> {
        let mut r = Reader::new(chunk);
        let h = read_header(&mut r)?;
        if h.entries == 0 || h.max_ts < start || h.min_ts >= end {
            return Ok(0);
        }
        let cols_frame = r.take(
            usize::try_from(h.cols_frame_len).map_err(|_| corrupt("frame length overflows"))?,
        )?;
        let lines_frame = r.rest();
        self.cols.clear();
        self.cols.reserve(h.cols_len as usize);
        let got = self
            .zstd
            .decompress_to_buffer(cols_frame, &mut self.cols)
            .map_err(|e| corrupt(format!("decompress log chunk columns: {e}")))?;
        if got as u64 != h.cols_len {
            return Err(corrupt("log chunk columns length mismatch"));
        }
        let cols = std::mem::take(&mut self.cols);
        let res = self.decode_cols(&cols, &h, start, end, out);
        self.cols = cols;
        let (i0, i1) = res?;
        let n = h.entries as usize;
        let base = out.lines.len();
        if i0 == 0 && i1 == n && base == 0 {
            // The common case: the whole chunk into an empty batch, decompressed in place.
            out.lines.reserve(h.raw_bytes as usize);
            let got = self
                .zstd
                .decompress_to_buffer(lines_frame, &mut out.lines)
                .map_err(|e| corrupt(format!("decompress log chunk lines: {e}")))?;
            if got as u64 != h.raw_bytes {
                out.lines.clear();
                return Err(corrupt("log chunk lines length mismatch"));
            }
        } else {
            self.lines.clear();
            self.lines.reserve(h.raw_bytes as usize);
            let got = self
                .zstd
                .decompress_to_buffer(lines_frame, &mut self.lines)
                .map_err(|e| corrupt(format!("decompress log chunk lines: {e}")))?;
            if got as u64 != h.raw_bytes {
                return Err(corrupt("log chunk lines length mismatch"));
            }
            let off0: usize = self.lens[..i0].iter().map(|&l| l as usize).sum();
            let len: usize = self.lens[i0..i1].iter().map(|&l| l as usize).sum();
            out.lines.extend_from_slice(&self.lines[off0..off0 + len]);
        }
        if out.lines.len() > u32::MAX as usize {
            return Err(corrupt("batch exceeds 4 GiB of lines"));
        }
        let mut e = base;
        for &l in &self.lens[i0..i1] {
            e += l as usize;
            out.line_ends.push(e as u32);
        }
        out.ts.extend_from_slice(&self.ts[i0..i1]);
        Ok(i1 - i0)
    }

    /// Decodes the columns, appending the metadata of entries `i0..i1` (those in range) to `out`;
    /// returns `(i0, i1)`. Timestamps and lengths stay in `self`.
    fn decode_cols(
        &mut self,
        cols: &[u8],
        h: &ChunkHeader,
        start: i64,
        end: i64,
        out: &mut Batch,
    ) -> Result<(usize, usize), Error> {
        let n = h.entries as usize;
        let mut r = Reader::new(cols);
        if n > cols.len() {
            return Err(corrupt("chunk entry count exceeds its columns"));
        }
        self.ts.clear();
        self.lens.clear();
        let mut t = h.min_ts;
        for _ in 0..n {
            t = t.wrapping_add(r.uvarint()? as i64);
            self.ts.push(t);
        }
        let mut total = 0u64;
        for _ in 0..n {
            let l = r.uvarint()?;
            total += l;
            self.lens
                .push(u32::try_from(l).map_err(|_| corrupt("line too long"))?);
        }
        if total != h.raw_bytes {
            return Err(corrupt(
                "log chunk line lengths do not match its line bytes",
            ));
        }
        let i0 = self.ts.partition_point(|&t| t < start);
        let i1 = self.ts.partition_point(|&t| t < end);
        if h.flags & FLAG_META != 0 {
            self.syms.clear();
            let ns = r.count()?;
            for _ in 0..ns {
                self.syms.push(Arc::from(r.str()?));
            }
            // Each distinct (name, value) symbol pair becomes one entry of the batch's table.
            self.pairs.clear();
            for i in 0..n {
                let np = r.count()?;
                let keep = i >= i0 && i < i1;
                for _ in 0..np {
                    let a = r.uvarint()? as usize;
                    let b = r.uvarint()? as usize;
                    if keep {
                        let slot = match self.pairs.iter().find(|(k, _)| *k == (a, b)) {
                            Some((_, slot)) => *slot,
                            None => {
                                let (Some(na), Some(vb)) = (self.syms.get(a), self.syms.get(b))
                                else {
                                    return Err(corrupt("metadata symbol out of range"));
                                };
                                let slot = out.intern(na, vb);
                                self.pairs.push(((a, b), slot));
                                slot
                            }
                        };
                        out.meta_refs.push(slot);
                    }
                }
                if keep {
                    out.meta_ends.push(out.meta_refs.len() as u32);
                }
            }
        } else {
            let m = out.meta_refs.len() as u32;
            out.meta_ends.extend(std::iter::repeat_n(m, i1 - i0));
        }
        Ok((i0, i1))
    }
}

/// The header of an encoded chunk.
#[cfg(test)]
pub(crate) fn chunk_header(chunk: &[u8]) -> Result<ChunkHeader, Error> {
    read_header(&mut Reader::new(chunk))
}

// ------------------------------------------------------------------------------------------------
// Block index: magic, then a zstd frame of: u8 version, uvarint streams; per stream labels,
// uvarint chunks; per chunk uvarint offset delta (from the end of the previous chunk of the
// stream), uvarint len, ivarint min_ts, uvarint max_ts - min_ts, uvarint entries, uvarint raw bytes.

/// Where one chunk of a block lives and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkRef {
    pub offset: u64,
    pub len: u64,
    pub min_ts: i64,
    pub max_ts: i64,
    pub entries: u32,
    pub raw_bytes: u64,
}

/// One stream of a block index.
#[derive(Clone, Debug)]
pub(crate) struct IndexStream {
    pub labels: Arc<Labels>,
    pub fingerprint: u64,
    pub chunks: Vec<ChunkRef>,
}

pub(crate) fn encode_index(streams: &[IndexStream]) -> Result<Vec<u8>, Error> {
    let mut p = Vec::new();
    p.push(INDEX_V1);
    put_uvarint(&mut p, streams.len() as u64);
    for s in streams {
        put_labels(&mut p, &s.labels);
        put_uvarint(&mut p, s.chunks.len() as u64);
        let mut end = 0u64;
        for c in &s.chunks {
            put_uvarint(&mut p, c.offset - end);
            put_uvarint(&mut p, c.len);
            put_ivarint(&mut p, c.min_ts);
            put_uvarint(&mut p, c.max_ts.wrapping_sub(c.min_ts) as u64);
            put_uvarint(&mut p, u64::from(c.entries));
            put_uvarint(&mut p, c.raw_bytes);
            end = c.offset + c.len;
        }
    }
    let mut out = INDEX_MAGIC.to_vec();
    out.extend(zstd::bulk::compress(&p, 3).map_err(|e| Error::Io {
        context: "compress log block index".into(),
        source: e,
    })?);
    Ok(out)
}

pub(crate) fn decode_index(data: &[u8]) -> Result<Vec<IndexStream>, Error> {
    if data.len() < 4 || &data[..4] != INDEX_MAGIC {
        return Err(corrupt("log block index has a bad magic"));
    }
    let p = zstd::bulk::decompress(&data[4..], MAX_INDEX_BYTES)
        .map_err(|e| corrupt(format!("decompress log block index: {e}")))?;
    let mut r = Reader::new(&p);
    let v = r.u8()?;
    if v != INDEX_V1 {
        return Err(corrupt(format!("unknown log block index version {v}")));
    }
    let n = r.count()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let labels = read_labels(&mut r)?;
        let nc = r.count()?;
        let mut chunks = Vec::with_capacity(nc);
        let mut end = 0u64;
        for _ in 0..nc {
            let offset = end
                .checked_add(r.uvarint()?)
                .ok_or_else(|| corrupt("chunk offset overflows"))?;
            let len = r.uvarint()?;
            let min_ts = r.ivarint()?;
            let max_ts = min_ts.wrapping_add(r.uvarint()? as i64);
            let entries = u32::try_from(r.uvarint()?).map_err(|_| corrupt("entries overflow"))?;
            let raw_bytes = r.uvarint()?;
            end = offset
                .checked_add(len)
                .ok_or_else(|| corrupt("chunk end overflows"))?;
            chunks.push(ChunkRef {
                offset,
                len,
                min_ts,
                max_ts,
                entries,
                raw_bytes,
            });
        }
        out.push(IndexStream {
            fingerprint: labels.stable_hash(),
            labels: Arc::new(labels),
            chunks,
        });
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------------
// Go time formatting for Loki's messages

fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        m,
        d,
        (sod / 3600) as u32,
        (sod % 3600 / 60) as u32,
        (sod % 60) as u32,
    )
}

/// Go's `time.RFC3339` of a unix-ns time in UTC (`2006-01-02T15:04:05Z`).
pub fn rfc3339(ns: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(ns.div_euclid(1_000_000_000));
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Go's `time.Time.String()` of a unix-ns time in UTC (`2006-01-02 15:04:05.999999999 +0000 UTC`).
pub fn go_time_string(ns: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(ns.div_euclid(1_000_000_000));
    let frac = ns.rem_euclid(1_000_000_000);
    let mut out = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}");
    if frac != 0 {
        let f = format!("{frac:09}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestEntry<'a> = (i64, &'a str, &'a [(&'a str, &'a str)]);

    fn batch(entries: &[TestEntry<'_>]) -> Batch {
        let mut b = Batch::default();
        for (t, l, m) in entries {
            b.push(
                *t,
                l.as_bytes(),
                m.iter().map(|(a, v)| (Arc::from(*a), Arc::from(*v))),
            );
        }
        b
    }

    #[test]
    fn varints_round_trip() {
        let mut out = Vec::new();
        let vals = [0i64, 1, -1, 63, -64, 1 << 40, i64::MIN, i64::MAX];
        for v in vals {
            put_ivarint(&mut out, v);
            put_uvarint(&mut out, v as u64);
        }
        let mut r = Reader::new(&out);
        for v in vals {
            assert_eq!(r.ivarint().unwrap(), v);
            assert_eq!(r.uvarint().unwrap(), v as u64);
        }
        assert!(r.is_empty());
        assert!(Reader::new(&[0x80]).uvarint().is_err());
    }

    #[test]
    fn chunk_round_trip_with_range() {
        let b = batch(&[
            (10, "a", &[]),
            (20, "bb", &[("trace_id", "x"), ("user", "y")]),
            (20, "ccc", &[("trace_id", "x")]),
            (35, "", &[]),
            (40, "eeee", &[("user", "y")]),
        ]);
        let (data, h) = encode_chunk(&b, 3).unwrap();
        assert_eq!(chunk_header(&data).unwrap(), h);
        assert_eq!(
            (h.entries, h.min_ts, h.max_ts, h.raw_bytes),
            (5, 10, 40, 10)
        );
        let mut d = Decoder::new().unwrap();
        let mut out = Batch::default();
        assert_eq!(
            d.decode_into(&data, i64::MIN, i64::MAX, &mut out).unwrap(),
            5
        );
        assert_eq!(out.ts, b.ts);
        assert_eq!(out.lines, b.lines);
        assert_eq!(out.line_ends, b.line_ends);
        assert_eq!(out.meta_ends, b.meta_ends);
        for i in 0..b.len() {
            assert_eq!(out.metadata_vec(i), b.metadata_vec(i));
        }
        // Appending a sub-range behind existing entries.
        assert_eq!(d.decode_into(&data, 20, 40, &mut out).unwrap(), 3);
        assert_eq!(out.len(), 8);
        assert_eq!(out.line(5), b"bb");
        assert_eq!(out.metadata(5).len(), 2);
        assert_eq!(out.line(7), b"");
        assert!(out.metadata(7).is_empty());
        // Without metadata.
        let b2 = batch(&[(1, "x", &[]), (2, "y", &[])]);
        let (data2, _) = encode_chunk(&b2, 3).unwrap();
        let mut out2 = Batch::default();
        d.decode_into(&data2, 2, 3, &mut out2).unwrap();
        assert_eq!(
            (out2.ts.clone(), out2.line(0).to_vec()),
            (vec![2], b"y".to_vec())
        );
        assert_eq!(out2.meta_ends, vec![0]);
        // Truncated data is an error, not a panic.
        for cut in 0..data.len() {
            let mut o = Batch::default();
            let _ = d.decode_into(&data[..cut], i64::MIN, i64::MAX, &mut o);
        }
    }

    /// Random batches and pushes round-trip through the chunk and WAL encodings, and every
    /// truncation of an encoding is an error (or a shorter valid prefix), never a panic.
    #[test]
    fn random_round_trips() {
        let mut x = 0x2545f4914f6cdd1du64;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n.max(1)
        };
        let names = ["a", "trace_id", "k", ""];
        for round in 0..200 {
            let n = 1 + rnd(60) as usize;
            let mut entries = Vec::new();
            let mut ts = rnd(1 << 40) as i64 - (1 << 39);
            for _ in 0..n {
                ts += rnd(3) as i64 * rnd(1 << 20) as i64;
                let line: String = (0..rnd(40))
                    .map(|_| char::from(b' ' + rnd(90) as u8))
                    .collect();
                let metadata = (0..rnd(3))
                    .map(|_| (names[rnd(4) as usize].to_string(), format!("v{}", rnd(5))))
                    .collect();
                entries.push(Entry { ts, line, metadata });
            }
            let mut b = Batch::default();
            for e in &entries {
                b.push(
                    e.ts,
                    e.line.as_bytes(),
                    e.metadata
                        .iter()
                        .map(|(k, v)| (Arc::from(k.as_str()), Arc::from(v.as_str()))),
                );
            }
            let (data, _) = encode_chunk(&b, 1).unwrap();
            let mut d = Decoder::new().unwrap();
            let mut out = Batch::default();
            d.decode_into(&data, i64::MIN, i64::MAX, &mut out).unwrap();
            assert_eq!(
                (
                    &out.ts,
                    &out.lines,
                    &out.line_ends,
                    &out.meta_ends,
                    (0..out.len())
                        .map(|i| out.metadata_vec(i))
                        .collect::<Vec<_>>()
                ),
                (
                    &b.ts,
                    &b.lines,
                    &b.line_ends,
                    &b.meta_ends,
                    (0..b.len()).map(|i| b.metadata_vec(i)).collect::<Vec<_>>()
                ),
                "round {round}"
            );
            let push = vec![StreamPush {
                labels: Labels::from_pairs([("app", "x"), ("n", "1")]),
                entries,
            }];
            let all: Vec<u32> = (0..n as u32).collect();
            let rec = encode_wal_record(&push, &[all]);
            assert_eq!(decode_wal_record(&rec).unwrap(), push);
            for cut in 0..rec.len() {
                let _ = decode_wal_record(&rec[..cut]);
            }
        }
    }

    #[test]
    fn go_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_665_408_344_000_000_000), "2022-10-10T13:25:44Z");
        assert_eq!(
            go_time_string(1_665_408_344_000_000_000),
            "2022-10-10 13:25:44 +0000 UTC"
        );
        assert_eq!(
            go_time_string(1_665_408_344_120_000_000),
            "2022-10-10 13:25:44.12 +0000 UTC"
        );
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00Z");
    }
}
