//! The on-disk block format of metrics (format version 1) and its in-memory index.
//!
//! A block is two files beside `meta.json`:
//! - `chunks`: a sequence of independently zstd-compressed *pages* (~128 KiB uncompressed). Value
//!   pages hold, per series in label order, its value column (decimal integers where exact, else
//!   XOR) and its native histograms. Timestamp pages hold *distinct* timestamp columns
//!   (delta-of-delta varints): all series scraped from one target share one column, because a scrape
//!   stamps them alike, so a block stores each target's timestamps once instead of once per series.
//!   Packing many series per zstd frame lets zstd see redundancy across series; a frame per series
//!   could not, and would pay its own header.
//! - `index`: a 4-byte magic then one zstd frame: the sorted symbol table, the page table (compressed
//!   and raw lengths; offsets are cumulative), the timestamp column table and per series (sorted by
//!   labels) its label symbol ids, its value bytes (page, offset, length), its timestamp column, its
//!   time range and sample counts.
//!
//! Postings are not stored: they are rebuilt from the label sets when the index is loaded, which is
//! one linear pass, and saves the bytes (the dominant cost per series after compression).
//! Readers fetch the index once (cached, decoded) and then only the pages of matching series, with
//! ranged reads.

use std::collections::HashMap;

use common::{Label, Labels, Matcher};

use super::encoding::{
    corrupt, decode_histograms, decode_timestamps, decode_values, encode_histograms,
    encode_timestamps, encode_values, put_str, put_uvarint, put_varint, zip_samples, Reader,
};
use super::postings::{Postings, Symbols};
use crate::model::{HistogramSample, Sample};
use crate::Error;

/// Format version written to `meta.json` (`version`) and the index magic.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Name of the index file.
pub(crate) const INDEX_FILE: &str = "index";
/// Name of the chunks file.
pub(crate) const CHUNKS_FILE: &str = "chunks";
const INDEX_MAGIC: &[u8; 4] = b"HMI1";
/// Uncompressed page target: large enough for zstd to find cross-series redundancy, small enough
/// that reading one series decompresses little.
const PAGE_BYTES: usize = 128 << 10;
/// zstd level: blocks are written once in the background and read many times; 9 is ~3× slower than
/// the default 3 for a measurably smaller result, still far from being a bottleneck.
const ZSTD_LEVEL: i32 = 9;
/// Ceiling for one decompressed page or index (corrupt lengths must not allocate unbounded memory).
const MAX_DECODED: usize = 1 << 30;

/// Counts for `meta.json` stats and `StoreStats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BlockCounts {
    pub series: u64,
    pub samples: u64,
    pub histograms: u64,
    pub min_time: i64,
    pub max_time: i64,
}

struct WSeries {
    labels: Vec<u32>,
    /// Value page sequence number (translated to a page index at `finish`).
    vseq: u32,
    off: u32,
    len: u32,
    /// Timestamp column id, `NO_COLUMN` when the series has no float samples.
    col: u32,
    mint: i64,
    maxt: i64,
    nf: u32,
    nh: u32,
}

/// Column id of series without float samples.
const NO_COLUMN: u32 = u32::MAX;

/// A page being filled: its bytes and, per flushed page, the global page index it got.
#[derive(Default)]
struct PageBuf {
    buf: Vec<u8>,
    flushed: Vec<u32>,
}

/// Builds a block from series given in label order.
pub(crate) struct BlockWriter {
    syms: HashMap<String, u32>,
    sym_list: Vec<String>,
    series: Vec<WSeries>,
    values: PageBuf,
    times: PageBuf,
    /// Distinct timestamp columns → column id.
    col_ids: HashMap<Vec<u8>, u32>,
    /// Per column: (timestamp page sequence number, offset, length).
    cols: Vec<(u32, u32, u32)>,
    scratch: Vec<u8>,
    chunks: Vec<u8>,
    pages: Vec<(u32, u32)>,
    counts: BlockCounts,
}

impl Default for BlockWriter {
    fn default() -> Self {
        Self {
            syms: HashMap::new(),
            sym_list: Vec::new(),
            series: Vec::new(),
            values: PageBuf::default(),
            times: PageBuf::default(),
            col_ids: HashMap::new(),
            cols: Vec::new(),
            scratch: Vec::new(),
            chunks: Vec::new(),
            pages: Vec::new(),
            counts: BlockCounts {
                min_time: i64::MAX,
                max_time: i64::MIN,
                ..Default::default()
            },
        }
    }
}

fn u32_len(n: usize) -> Result<u32, Error> {
    u32::try_from(n).map_err(|_| Error::Internal("series too large for a block page".into()))
}

impl BlockWriter {
    fn sym(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.syms.get(s) {
            return id;
        }
        let id = self.sym_list.len() as u32;
        self.sym_list.push(s.to_string());
        self.syms.insert(s.to_string(), id);
        id
    }

    /// Adds a series; calls must come in strictly increasing label order. Samples sorted, unique.
    pub(crate) fn add(
        &mut self,
        labels: &Labels,
        floats: &[Sample],
        hists: &[HistogramSample],
    ) -> Result<(), Error> {
        if floats.is_empty() && hists.is_empty() {
            return Ok(());
        }
        let pairs: Vec<u32> = labels
            .iter()
            .flat_map(|l| [self.sym(&l.name), self.sym(&l.value)])
            .collect();
        let col = if floats.is_empty() {
            NO_COLUMN
        } else {
            self.scratch.clear();
            encode_timestamps(&mut self.scratch, floats);
            match self.col_ids.get(&self.scratch) {
                Some(&id) => id,
                None => {
                    let id = self.cols.len() as u32;
                    let off = self.times.buf.len();
                    self.times.buf.extend_from_slice(&self.scratch);
                    self.cols.push((
                        self.times.flushed.len() as u32,
                        off as u32,
                        u32_len(self.scratch.len())?,
                    ));
                    self.col_ids.insert(self.scratch.clone(), id);
                    if self.times.buf.len() >= PAGE_BYTES {
                        flush(&mut self.times, &mut self.chunks, &mut self.pages)?;
                    }
                    id
                }
            }
        };
        let off = self.values.buf.len();
        encode_values(&mut self.values.buf, floats);
        encode_histograms(&mut self.values.buf, hists);
        let len = u32_len(self.values.buf.len() - off)?;
        let mint = floats
            .first()
            .map_or(i64::MAX, |s| s.t)
            .min(hists.first().map_or(i64::MAX, |h| h.t));
        let maxt = floats
            .last()
            .map_or(i64::MIN, |s| s.t)
            .max(hists.last().map_or(i64::MIN, |h| h.t));
        self.series.push(WSeries {
            labels: pairs,
            vseq: self.values.flushed.len() as u32,
            off: off as u32,
            len,
            col,
            mint,
            maxt,
            nf: floats.len() as u32,
            nh: hists.len() as u32,
        });
        self.counts.series += 1;
        self.counts.samples += floats.len() as u64;
        self.counts.histograms += hists.len() as u64;
        self.counts.min_time = self.counts.min_time.min(mint);
        self.counts.max_time = self.counts.max_time.max(maxt);
        if self.values.buf.len() >= PAGE_BYTES {
            flush(&mut self.values, &mut self.chunks, &mut self.pages)?;
        }
        Ok(())
    }

    /// Whether no series was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Finishes the block: `(index bytes, chunks bytes, counts)`.
    pub(crate) fn finish(mut self) -> Result<(Vec<u8>, Vec<u8>, BlockCounts), Error> {
        flush(&mut self.values, &mut self.chunks, &mut self.pages)?;
        flush(&mut self.times, &mut self.chunks, &mut self.pages)?;
        // Sorted symbols compress better and let readers binary-search; remap ids accordingly.
        let mut order: Vec<u32> = (0..self.sym_list.len() as u32).collect();
        order.sort_by(|&a, &b| self.sym_list[a as usize].cmp(&self.sym_list[b as usize]));
        let mut remap = vec![0u32; order.len()];
        for (new, &old) in order.iter().enumerate() {
            remap[old as usize] = new as u32;
        }
        let mut body = Vec::with_capacity(self.series.len() * 32 + self.sym_list.len() * 16);
        put_uvarint(&mut body, order.len() as u64);
        for &old in &order {
            put_str(&mut body, &self.sym_list[old as usize]);
        }
        put_uvarint(&mut body, self.pages.len() as u64);
        for &(c, u) in &self.pages {
            put_uvarint(&mut body, u64::from(c));
            put_uvarint(&mut body, u64::from(u));
        }
        put_uvarint(&mut body, self.cols.len() as u64);
        for &(seq, off, len) in &self.cols {
            put_uvarint(&mut body, u64::from(self.times.flushed[seq as usize]));
            put_uvarint(&mut body, u64::from(off));
            put_uvarint(&mut body, u64::from(len));
        }
        put_uvarint(&mut body, self.series.len() as u64);
        for s in &self.series {
            put_uvarint(&mut body, (s.labels.len() / 2) as u64);
            for &l in &s.labels {
                put_uvarint(&mut body, u64::from(remap[l as usize]));
            }
            put_uvarint(&mut body, u64::from(self.values.flushed[s.vseq as usize]));
            put_uvarint(&mut body, u64::from(s.off));
            put_uvarint(&mut body, u64::from(s.len));
            // Column ids + 1, so that "none" is 0.
            put_uvarint(
                &mut body,
                if s.col == NO_COLUMN {
                    0
                } else {
                    u64::from(s.col) + 1
                },
            );
            put_varint(&mut body, s.mint);
            put_uvarint(&mut body, s.maxt.wrapping_sub(s.mint) as u64);
            put_uvarint(&mut body, u64::from(s.nf));
            put_uvarint(&mut body, u64::from(s.nh));
        }
        let mut index = INDEX_MAGIC.to_vec();
        put_uvarint(&mut index, body.len() as u64);
        index.extend(
            zstd::bulk::compress(&body, ZSTD_LEVEL)
                .map_err(|e| Error::Internal(format!("zstd: {e}")))?,
        );
        Ok((index, self.chunks, self.counts))
    }
}

/// Compresses a page buffer into the chunks file and records its global page index.
fn flush(p: &mut PageBuf, chunks: &mut Vec<u8>, pages: &mut Vec<(u32, u32)>) -> Result<(), Error> {
    if p.buf.is_empty() {
        return Ok(());
    }
    let c = zstd::bulk::compress(&p.buf, ZSTD_LEVEL)
        .map_err(|e| Error::Internal(format!("zstd: {e}")))?;
    p.flushed.push(pages.len() as u32);
    pages.push((c.len() as u32, p.buf.len() as u32));
    chunks.extend_from_slice(&c);
    p.buf.clear();
    Ok(())
}

/// One series in a decoded index.
pub(crate) struct IndexSeries {
    pub labels: Box<[u32]>,
    /// Value page, offset and length of the series' value bytes in it.
    pub page: u32,
    pub off: u32,
    pub len: u32,
    /// Timestamp column, `NO_COLUMN` when none.
    pub col: u32,
    pub mint: i64,
    pub maxt: i64,
    pub floats: u32,
    pub histograms: u32,
}

/// A decoded block index, kept in memory per block.
pub(crate) struct BlockIndex {
    pub symbols: Symbols,
    /// Per page: (offset in `chunks`, compressed length, raw length).
    pub pages: Vec<(u64, u32, u32)>,
    /// Per timestamp column: (page, offset, length).
    pub cols: Vec<(u32, u32, u32)>,
    pub series: Vec<IndexSeries>,
    pub postings: Postings,
    /// Bytes of the `chunks` file.
    pub chunks_len: u64,
}

fn u32_of(v: u64, what: &str) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| corrupt(what))
}

impl BlockIndex {
    /// Decodes an `index` file.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() < 4 || &bytes[..4] != INDEX_MAGIC {
            return Err(corrupt("block index magic"));
        }
        let mut r = Reader::new(&bytes[4..]);
        let raw_len = r.uvarint()? as usize;
        if raw_len > MAX_DECODED {
            return Err(corrupt("block index too large"));
        }
        let rest = r.bytes(bytes.len() - 4 - varint_size(raw_len as u64))?;
        let body = zstd::bulk::decompress(rest, raw_len)
            .map_err(|e| corrupt(&format!("block index zstd: {e}")))?;
        let mut r = Reader::new(&body);
        let mut symbols = Symbols::default();
        let nsyms = r.len(1)?;
        for _ in 0..nsyms {
            symbols.intern(r.str()?);
        }
        if symbols.len() != nsyms {
            return Err(corrupt("duplicate symbols"));
        }
        let npages = r.len(2)?;
        let mut pages = Vec::with_capacity(npages);
        let mut off = 0u64;
        for _ in 0..npages {
            let c = u32_of(r.uvarint()?, "page length")?;
            let u = u32_of(r.uvarint()?, "page length")?;
            pages.push((off, c, u));
            off += u64::from(c);
        }
        let in_page = |page: u32, off: u32, len: u32| -> Result<(), Error> {
            let raw = pages
                .get(page as usize)
                .ok_or_else(|| corrupt("page out of range"))?
                .2;
            if u64::from(off) + u64::from(len) > u64::from(raw) {
                return Err(corrupt("bytes beyond page"));
            }
            Ok(())
        };
        let ncols = r.len(3)?;
        let mut cols = Vec::with_capacity(ncols);
        for _ in 0..ncols {
            let page = u32_of(r.uvarint()?, "page")?;
            let off = u32_of(r.uvarint()?, "offset")?;
            let len = u32_of(r.uvarint()?, "length")?;
            in_page(page, off, len)?;
            cols.push((page, off, len));
        }
        let nseries = r.len(9)?;
        let mut series = Vec::with_capacity(nseries);
        let mut postings = Postings::default();
        for i in 0..nseries {
            let nl = r.len(2)?;
            let mut labels = Vec::with_capacity(nl * 2);
            for _ in 0..nl * 2 {
                let s = u32_of(r.uvarint()?, "symbol")?;
                if s as usize >= nsyms {
                    return Err(corrupt("symbol out of range"));
                }
                labels.push(s);
            }
            let page = u32_of(r.uvarint()?, "page")?;
            let off = u32_of(r.uvarint()?, "offset")?;
            let len = u32_of(r.uvarint()?, "length")?;
            in_page(page, off, len)?;
            let col = match r.uvarint()? {
                0 => NO_COLUMN,
                c if (c as usize) <= ncols => (c - 1) as u32,
                _ => return Err(corrupt("timestamp column out of range")),
            };
            let mint = r.varint()?;
            let maxt = mint.wrapping_add(r.uvarint()? as i64);
            let floats = u32_of(r.uvarint()?, "count")?;
            let histograms = u32_of(r.uvarint()?, "count")?;
            if (col == NO_COLUMN) != (floats == 0) {
                return Err(corrupt("timestamp column"));
            }
            let labels: Box<[u32]> = labels.into();
            postings.add(&labels, i as u32);
            series.push(IndexSeries {
                labels,
                page,
                off,
                len,
                col,
                mint,
                maxt,
                floats,
                histograms,
            });
        }
        Ok(Self {
            symbols,
            pages,
            cols,
            series,
            postings,
            chunks_len: off,
        })
    }

    /// Indexes of series matching `matchers` with data in `[mint, maxt]`, in label order.
    pub(crate) fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<u32> {
        let mut ids = self.postings.select(matchers, &self.symbols);
        ids.retain(|&i| {
            let s = &self.series[i as usize];
            s.maxt >= mint && s.mint <= maxt
        });
        ids
    }

    /// The label set of series `i`.
    pub(crate) fn labels(&self, i: u32) -> Labels {
        let s = &self.series[i as usize];
        Labels::from_sorted(
            s.labels
                .chunks_exact(2)
                .map(|p| Label::new(self.symbols.get(p[0]), self.symbols.get(p[1])))
                .collect(),
        )
    }

    /// The pages series `i` needs: its value page and, if any, its timestamp page.
    pub(crate) fn pages_of(&self, i: u32) -> (u32, Option<u32>) {
        let s = &self.series[i as usize];
        (
            s.page,
            (s.col != NO_COLUMN).then(|| self.cols[s.col as usize].0),
        )
    }

    /// Byte range of page `p` in the chunks file.
    pub(crate) fn page_range(&self, p: u32) -> std::ops::Range<u64> {
        let (off, c, _) = self.pages[p as usize];
        off..off + u64::from(c)
    }

    /// Decompresses page `p` from its compressed bytes.
    pub(crate) fn decompress_page(&self, p: u32, compressed: &[u8]) -> Result<Vec<u8>, Error> {
        let raw = self.pages[p as usize].2 as usize;
        if raw > MAX_DECODED {
            return Err(corrupt("page too large"));
        }
        let out = zstd::bulk::decompress(compressed, raw)
            .map_err(|e| corrupt(&format!("page zstd: {e}")))?;
        if out.len() != raw {
            return Err(corrupt("page length"));
        }
        Ok(out)
    }

    /// Decodes series `i`, keeping data in `[mint, maxt]`; `page(p)` gives decompressed pages
    /// (those named by [`Self::pages_of`]).
    pub(crate) fn decode_series<'a>(
        &self,
        i: u32,
        page: impl Fn(u32) -> Option<&'a [u8]>,
        mint: i64,
        maxt: i64,
    ) -> Result<(Vec<Sample>, Vec<HistogramSample>), Error> {
        let s = &self.series[i as usize];
        let n = s.floats as usize;
        let slice = |p: u32, off: u32, len: u32| {
            page(p)
                .and_then(|b| b.get(off as usize..off as usize + len as usize))
                .ok_or_else(|| corrupt("series bytes"))
        };
        let mut f = Vec::new();
        if s.col != NO_COLUMN {
            let (p, off, len) = self.cols[s.col as usize];
            let mut ts = Vec::with_capacity(n);
            decode_timestamps(&mut Reader::new(slice(p, off, len)?), n, &mut ts)?;
            let mut r = Reader::new(slice(s.page, s.off, s.len)?);
            let mut vs = Vec::with_capacity(n);
            decode_values(&mut r, n, &mut vs)?;
            f.reserve(n);
            zip_samples(ts, vs, mint, maxt, &mut f);
            let mut h = Vec::with_capacity(s.histograms as usize);
            decode_histograms(&mut r, mint, maxt, &mut h)?;
            return Ok((f, h));
        }
        let mut r = Reader::new(slice(s.page, s.off, s.len)?);
        let mut h = Vec::with_capacity(s.histograms as usize);
        decode_histograms(&mut r, mint, maxt, &mut h)?;
        Ok((f, h))
    }

    /// Number of series.
    pub(crate) fn series_count(&self) -> usize {
        self.series.len()
    }
}

fn varint_size(v: u64) -> usize {
    let mut b = Vec::new();
    put_uvarint(&mut b, v);
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::MatchOp;
    use std::sync::Arc;

    #[test]
    fn block_round_trip_and_select() {
        let mut w = BlockWriter::default();
        let mut all = Vec::new();
        for i in 0..2000 {
            let labels = Labels::from_pairs([
                ("__name__", "m"),
                ("i", &format!("{i:05}")),
                ("odd", if i % 2 == 1 { "y" } else { "n" }),
            ]);
            let samples: Vec<Sample> = (0..50)
                .map(|j| Sample {
                    t: j * 1000,
                    v: (i * j) as f64 / 4.0,
                })
                .collect();
            let hists = if i == 7 {
                vec![HistogramSample {
                    t: 5,
                    h: Arc::new(crate::model::Histogram {
                        count: 1.0,
                        ..Default::default()
                    }),
                }]
            } else {
                vec![]
            };
            w.add(&labels, &samples, &hists).unwrap();
            all.push((labels, samples, hists));
        }
        let (index, chunks, counts) = w.finish().unwrap();
        assert_eq!(counts.series, 2000);
        assert_eq!(counts.samples, 100_000);
        assert!(chunks.len() < 100_000 * 2, "{} bytes", chunks.len());
        let ix = BlockIndex::decode(&index).unwrap();
        assert_eq!(ix.chunks_len, chunks.len() as u64);
        let m = [
            Matcher::new(MatchOp::Regex, "i", "0000[0-9]").unwrap(),
            Matcher::equal("odd", "y"),
        ];
        let ids = ix.select(&m, 0, i64::MAX);
        assert_eq!(ids, vec![1, 3, 5, 7, 9]);
        for id in ids {
            let (vp, tp) = ix.pages_of(id);
            let load = |p: u32| {
                let r = ix.page_range(p);
                ix.decompress_page(p, &chunks[r.start as usize..r.end as usize])
                    .unwrap()
            };
            let vpage = load(vp);
            let tpage = tp.map(load);
            let get = |p: u32| {
                if p == vp {
                    Some(vpage.as_slice())
                } else if Some(p) == tp {
                    tpage.as_deref()
                } else {
                    None
                }
            };
            let (f, h) = ix.decode_series(id, get, 10_000, 20_000).unwrap();
            let want = &all[id as usize];
            assert_eq!(ix.labels(id), want.0);
            assert_eq!(f, want.1[10..=20].to_vec());
            assert_eq!(h, Vec::new());
            if id == 7 {
                assert_eq!(ix.decode_series(id, get, 0, 5).unwrap().1, want.2);
            }
        }
        // All 2000 series share one timestamp column.
        assert_eq!(ix.cols.len(), 1);
        assert!(ix.select(&m, 60_000, 70_000).is_empty());
        assert!(BlockIndex::decode(&index[..index.len() - 2]).is_err());
        assert!(BlockIndex::decode(b"nope").is_err());
    }
}
