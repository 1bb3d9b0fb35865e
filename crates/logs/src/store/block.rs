//! Log blocks: a `chunks` file of sealed chunks (stream by stream, streams in label order) and an
//! `index` file locating each stream's chunks. Reading needs only the object store.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use common::{Labels, TenantId};
use storage::block::{BlockMeta, BlockStore};

use super::codec::{decode_index, encode_chunk, encode_index, ChunkRef, Decoder, IndexStream};
use super::head::SealedChunk;
use super::{merge_into, SIGNAL};
use crate::model::Batch;
use crate::Error;

/// Block format version (in `meta.json`).
pub(crate) const FORMAT_VERSION: u32 = 1;
pub(crate) const INDEX_FILE: &str = "index";
pub(crate) const CHUNKS_FILE: &str = "chunks";
/// Chunk ranges closer than this are fetched with one ranged read.
const COALESCE_GAP: u64 = 512 << 10;
/// Upper bound of one ranged read (unless a single chunk is larger).
const MAX_FETCH: u64 = 16 << 20;

/// A decoded block index (cached per block).
pub(crate) struct BlockIndex {
    pub streams: Vec<IndexStream>,
}

impl BlockIndex {
    pub fn decode(data: &[u8]) -> Result<Self, Error> {
        Ok(Self {
            streams: decode_index(data)?,
        })
    }
}

/// Totals of a written block.
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct BlockCounts {
    pub streams: u64,
    pub chunks: u64,
    pub entries: u64,
    pub raw_bytes: u64,
    pub min_ts: i64,
    pub max_ts: i64,
}

/// Builds the two files of a block from streams' sealed chunks; `streams` must be sorted by labels.
/// A stream whose chunks overlap in time or include small ones (sealed by age) is re-chunked:
/// merged in time order and cut again at `target` bytes, so that blocks hold few, full,
/// non-overlapping chunks per stream (better compression, fewer reads, no merging on scans).
/// With `recompress` every stream is re-chunked at `level` (head chunks are sealed faster).
pub(crate) fn build_block(
    streams: &[(Arc<Labels>, Vec<Arc<SealedChunk>>)],
    target: usize,
    level: i32,
    recompress: bool,
) -> Result<(Vec<u8>, Vec<u8>, BlockCounts), Error> {
    let mut chunks_file = Vec::new();
    let mut index = Vec::with_capacity(streams.len());
    let mut c = BlockCounts {
        min_ts: i64::MAX,
        max_ts: i64::MIN,
        ..Default::default()
    };
    let mut dec = Decoder::new()?;
    for (labels, chunks) in streams {
        if chunks.is_empty() {
            continue;
        }
        let mut sorted: Vec<Arc<SealedChunk>> = chunks.clone();
        sorted.sort_by_key(|c| (c.min_ts, c.max_ts));
        if recompress || needs_rechunk(&sorted, target) {
            sorted = rechunk(&sorted, &mut dec, target, level)?;
        }
        let mut refs = Vec::with_capacity(sorted.len());
        for ch in sorted {
            refs.push(ChunkRef {
                offset: chunks_file.len() as u64,
                len: ch.data.len() as u64,
                min_ts: ch.min_ts,
                max_ts: ch.max_ts,
                entries: ch.entries,
                raw_bytes: ch.raw_bytes,
            });
            chunks_file.extend_from_slice(&ch.data);
            c.chunks += 1;
            c.entries += u64::from(ch.entries);
            c.raw_bytes += ch.raw_bytes;
            c.min_ts = c.min_ts.min(ch.min_ts);
            c.max_ts = c.max_ts.max(ch.max_ts);
        }
        c.streams += 1;
        index.push(IndexStream {
            fingerprint: labels.stable_hash(),
            labels: labels.clone(),
            chunks: refs,
        });
    }
    Ok((encode_index(&index)?, chunks_file, c))
}

/// Whether sorted chunks overlap or more than one of them is under half the target size.
fn needs_rechunk(sorted: &[Arc<SealedChunk>], target: usize) -> bool {
    if sorted.len() < 2 {
        return false;
    }
    let overlap = sorted.windows(2).any(|w| w[1].min_ts <= w[0].max_ts);
    let small = sorted
        .iter()
        .filter(|c| c.raw_bytes < (target / 2) as u64)
        .count();
    overlap || small > 1
}

fn rechunk(
    sorted: &[Arc<SealedChunk>],
    dec: &mut Decoder,
    target: usize,
    level: i32,
) -> Result<Vec<Arc<SealedChunk>>, Error> {
    let mut parts = Vec::with_capacity(sorted.len());
    for ch in sorted {
        let mut b = Batch::default();
        dec.decode_into(&ch.data, i64::MIN, i64::MAX, &mut b)?;
        parts.push(b);
    }
    let mut all = Batch::default();
    merge_into(&parts, &mut all);
    drop(parts);
    let mut out = Vec::new();
    let mut cur = Batch::default();
    for i in 0..all.len() {
        cur.push(all.ts[i], all.line(i), all.metadata(i).iter());
        if cur.lines.len() >= target || i + 1 == all.len() {
            let (data, h) = encode_chunk(&cur, level)?;
            out.push(Arc::new(SealedChunk {
                data: Bytes::from(data),
                min_ts: h.min_ts,
                max_ts: h.max_ts,
                entries: h.entries,
                raw_bytes: h.raw_bytes,
            }));
            cur.clear();
        }
    }
    Ok(out)
}

/// Reads chunks of one block for a scan: the needed ranges are known up front and consumed in
/// ascending order, so nearby chunks are coalesced into one ranged read and only the current
/// window is held in memory.
pub(crate) struct BlockFetcher {
    pub tenant: TenantId,
    pub meta: BlockMeta,
    windows: Vec<Range<u64>>,
    cur: Option<(Range<u64>, Bytes)>,
}

impl BlockFetcher {
    /// `needed` need not be sorted.
    pub fn new(tenant: TenantId, meta: BlockMeta, mut needed: Vec<Range<u64>>) -> Self {
        needed.sort_by_key(|r| r.start);
        let mut windows: Vec<Range<u64>> = Vec::new();
        for r in needed {
            match windows.last_mut() {
                Some(w) if r.start <= w.end + COALESCE_GAP && r.end - w.start <= MAX_FETCH => {
                    w.end = w.end.max(r.end);
                }
                _ => windows.push(r),
            }
        }
        Self {
            tenant,
            meta,
            windows,
            cur: None,
        }
    }

    /// The bytes of `r` (one chunk).
    pub async fn get(&mut self, blocks: &BlockStore, r: Range<u64>) -> Result<Bytes, Error> {
        if let Some((w, b)) = &self.cur {
            if w.start <= r.start && r.end <= w.end {
                return Ok(b.slice((r.start - w.start) as usize..(r.end - w.start) as usize));
            }
        }
        let i = self.windows.partition_point(|w| w.end <= r.start);
        let w = match self.windows.get(i) {
            Some(w) if w.start <= r.start && r.end <= w.end => w.clone(),
            _ => r.clone(),
        };
        let b = blocks
            .get_range(&self.tenant, SIGNAL, self.meta.ulid, CHUNKS_FILE, w.clone())
            .await?;
        if b.len() as u64 != w.end - w.start {
            return Err(Error::Corrupt(format!(
                "short read of log block {} chunks",
                self.meta.ulid
            )));
        }
        let out = b.slice((r.start - w.start) as usize..(r.end - w.start) as usize);
        self.cur = Some((w, b));
        Ok(out)
    }
}
