//! The in-memory head of one tenant: streams with an open chunk of raw entries and sealed
//! (compressed) chunks, plus the chunks being written into a block.

use std::collections::{HashMap, HashSet};
use std::hash::Hasher;
use std::sync::Arc;

use bytes::Bytes;
use common::labels::Fnv64;
use common::{Labels, TenantId};
use parking_lot::{Mutex, RwLock};

use super::codec::{encode_chunk, sort_batch};
use crate::model::{Batch, Entry, StreamInfo, StreamPush};
use crate::Error;

/// A compressed, immutable chunk (the same bytes go into a block's `chunks` file).
#[derive(Debug)]
pub(crate) struct SealedChunk {
    pub data: Bytes,
    pub min_ts: i64,
    pub max_ts: i64,
    pub entries: u32,
    pub raw_bytes: u64,
}

/// What push validation and replay need to know of a stream besides its data.
pub(crate) struct StreamState {
    /// Newest timestamp accepted (`i64::MIN` before the first entry).
    pub highest_ts: i64,
    /// The last accepted entry, for Loki's duplicate check.
    pub last_ts: i64,
    pub last_line: Vec<u8>,
    pub last_meta: u64,
    pub has_last: bool,
    /// Raw entries not yet sealed, in arrival order. Shared copy-on-write with scans, which take
    /// a snapshot under the lock and filter it later (a push during a scan copies it once).
    pub open: Arc<Batch>,
    pub open_sorted: bool,
    pub open_min: i64,
    pub open_max: i64,
    /// Wall-clock ns when the open chunk received its first entry.
    pub open_since: i64,
    /// Metadata strings of the open chunk, shared between its entries (OTLP resource attributes
    /// repeat on every entry); bounded, cleared on seal.
    interned: HashSet<Arc<str>>,
    /// Sealed chunks still only in the head.
    pub sealed: Vec<Arc<SealedChunk>>,
    /// Sealed chunks being written into a block (readable until the block is listed).
    pub flushing: Vec<Arc<SealedChunk>>,
}

/// The validation part of a stream's state, saved to undo a push whose WAL write failed.
pub(crate) struct Validation {
    highest_ts: i64,
    last_ts: i64,
    last_line: Vec<u8>,
    last_meta: u64,
    has_last: bool,
}

impl StreamState {
    pub fn validation(&self) -> Validation {
        Validation {
            highest_ts: self.highest_ts,
            last_ts: self.last_ts,
            last_line: self.last_line.clone(),
            last_meta: self.last_meta,
            has_last: self.has_last,
        }
    }

    pub fn restore(&mut self, v: Validation) {
        self.highest_ts = v.highest_ts;
        self.last_ts = v.last_ts;
        self.last_line = v.last_line;
        self.last_meta = v.last_meta;
        self.has_last = v.has_last;
    }

    fn new() -> Self {
        Self {
            highest_ts: i64::MIN,
            last_ts: i64::MIN,
            last_line: Vec::new(),
            last_meta: 0,
            has_last: false,
            open: Arc::new(Batch::default()),
            open_sorted: true,
            open_min: i64::MAX,
            open_max: i64::MIN,
            open_since: i64::MAX,
            interned: HashSet::new(),
            sealed: Vec::new(),
            flushing: Vec::new(),
        }
    }

    /// Whether `e` repeats the last accepted entry (same time, line and metadata).
    pub fn is_duplicate(&self, e: &Entry) -> bool {
        self.has_last
            && self.last_ts == e.ts
            && self.last_line == e.line.as_bytes()
            && self.last_meta == meta_hash(&e.metadata)
    }

    /// Records `e` as accepted for the validation state.
    pub fn note_accepted(&mut self, e: &Entry) {
        self.highest_ts = self.highest_ts.max(e.ts);
        self.last_ts = e.ts;
        self.last_line.clear();
        self.last_line.extend_from_slice(e.line.as_bytes());
        self.last_meta = meta_hash(&e.metadata);
        self.has_last = true;
    }

    /// Appends an entry to the open chunk (taking its strings).
    pub fn append(&mut self, e: Entry, now_ns: i64) {
        if self.open.is_empty() {
            self.open_since = now_ns;
        }
        if e.ts < self.open_max {
            self.open_sorted = false;
        }
        self.open_min = self.open_min.min(e.ts);
        self.open_max = self.open_max.max(e.ts);
        let interned = &mut self.interned;
        Arc::make_mut(&mut self.open).push(
            e.ts,
            e.line.as_bytes(),
            e.metadata
                .into_iter()
                .map(|(n, v)| (intern(interned, n), intern(interned, v))),
        );
    }

    pub fn open_bytes(&self) -> usize {
        self.open.lines.len()
    }

    /// Compresses the open chunk into a sealed one; returns its compressed size.
    pub fn seal(&mut self, level: i32) -> Result<u64, Error> {
        if self.open.is_empty() {
            return Ok(0);
        }
        let sorted;
        let b = if self.open_sorted {
            &*self.open
        } else {
            sorted = sort_batch(&self.open);
            &sorted
        };
        let (data, h) = encode_chunk(b, level)?;
        let size = data.len() as u64;
        self.sealed.push(Arc::new(SealedChunk {
            data: Bytes::from(data),
            min_ts: h.min_ts,
            max_ts: h.max_ts,
            entries: h.entries,
            raw_bytes: h.raw_bytes,
        }));
        self.open = Arc::new(Batch::default());
        self.interned.clear();
        self.open_sorted = true;
        self.open_min = i64::MAX;
        self.open_max = i64::MIN;
        self.open_since = i64::MAX;
        Ok(size)
    }

    /// A snapshot of the open chunk for a scan, when it overlaps `[start, end)`.
    pub fn open_snapshot(&self, start: i64, end: i64) -> Option<OpenSnapshot> {
        if self.open.is_empty() || self.open_max < start || self.open_min >= end {
            return None;
        }
        Some(OpenSnapshot {
            batch: self.open.clone(),
            sorted: self.open_sorted,
            min: self.open_min,
            max: self.open_max,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty() && self.sealed.is_empty() && self.flushing.is_empty()
    }
}

/// Most distinct metadata strings interned per open chunk.
const MAX_INTERNED: usize = 4096;

fn intern(set: &mut HashSet<Arc<str>>, s: String) -> Arc<str> {
    if let Some(a) = set.get(s.as_str()) {
        return a.clone();
    }
    let a: Arc<str> = Arc::from(s);
    if set.len() < MAX_INTERNED {
        set.insert(a.clone());
    }
    a
}

/// FNV over metadata pairs, for the duplicate check (an equal hash of different metadata would
/// only drop a repeat of the same line at the same nanosecond).
pub(crate) fn meta_hash(m: &[(String, String)]) -> u64 {
    let mut h = Fnv64::default();
    for (n, v) in m {
        h.write(n.as_bytes());
        h.write_u8(0xff);
        h.write(v.as_bytes());
        h.write_u8(0xfe);
    }
    h.finish()
}

/// One stream of the head.
pub(crate) struct Stream {
    pub info: StreamInfo,
    pub state: Mutex<StreamState>,
}

#[derive(Default)]
struct StreamMap {
    by_fp: HashMap<u64, Vec<Arc<Stream>>>,
    count: usize,
}

/// The streams of one tenant.
#[derive(Default)]
pub(crate) struct Head {
    map: RwLock<StreamMap>,
}

impl Head {
    pub fn stream_count(&self) -> usize {
        self.map.read().count
    }

    /// All streams (unordered).
    pub fn streams(&self) -> Vec<Arc<Stream>> {
        self.map.read().by_fp.values().flatten().cloned().collect()
    }

    fn find(map: &StreamMap, fp: u64, labels: &Labels) -> Option<Arc<Stream>> {
        map.by_fp
            .get(&fp)
            .and_then(|v| v.iter().find(|s| *s.info.labels == *labels).cloned())
    }

    /// The stream of each push, creating missing ones. With `max_streams > 0`, refuses the whole
    /// request (creating nothing) when the new streams would take the tenant past the limit.
    pub fn resolve(
        &self,
        tenant: &TenantId,
        pushes: &[StreamPush],
        max_streams: usize,
    ) -> Result<Vec<Arc<Stream>>, Error> {
        let fps: Vec<u64> = pushes.iter().map(|p| p.labels.stable_hash()).collect();
        let mut out: Vec<Option<Arc<Stream>>> = Vec::with_capacity(pushes.len());
        let mut missing = false;
        {
            let map = self.map.read();
            for (p, &fp) in pushes.iter().zip(&fps) {
                let s = Self::find(&map, fp, &p.labels);
                missing |= s.is_none();
                out.push(s);
            }
        }
        if missing {
            let mut map = self.map.write();
            let mut new: Vec<usize> = Vec::new();
            for (i, p) in pushes.iter().enumerate() {
                if out[i].is_some() {
                    continue;
                }
                if let Some(s) = Self::find(&map, fps[i], &p.labels) {
                    out[i] = Some(s);
                } else if !new.iter().any(|&j| pushes[j].labels == p.labels) {
                    new.push(i);
                }
            }
            if max_streams > 0 && map.count + new.len() > max_streams {
                let first = new.first().map(|&i| pushes[i].labels.to_string());
                return Err(Error::Limit {
                    status: 429,
                    msg: format!(
                        "Maximum active stream limit exceeded when trying to create stream {}, reduce the number of active streams (reduce labels or reduce label values), or contact your Loki administrator to see if the limit can be increased, user: '{tenant}' (limit max_streams: {max_streams}, active: {}, new in this push: {})",
                        first.unwrap_or_default(),
                        map.count,
                        new.len()
                    ),
                });
            }
            for i in new {
                let s = Arc::new(Stream {
                    info: StreamInfo {
                        tenant: tenant.clone(),
                        labels: Arc::new(pushes[i].labels.clone()),
                        fingerprint: fps[i],
                    },
                    state: Mutex::new(StreamState::new()),
                });
                map.by_fp.entry(fps[i]).or_default().push(s);
                map.count += 1;
            }
            for (i, p) in pushes.iter().enumerate() {
                if out[i].is_none() {
                    out[i] = Self::find(&map, fps[i], &p.labels);
                }
            }
        }
        Ok(out.into_iter().map(|s| s.expect("resolved")).collect())
    }

    /// Drops streams holding no data (their validation state goes with them, as in Loki when a
    /// stream is flushed and idle). Callers exclude concurrent pushes.
    pub fn remove_empty(&self) -> usize {
        let mut map = self.map.write();
        let mut removed = 0;
        map.by_fp.retain(|_, v| {
            v.retain(|s| {
                let keep = !s.state.lock().is_empty();
                if !keep {
                    removed += 1;
                }
                keep
            });
            !v.is_empty()
        });
        map.count -= removed;
        removed
    }
}

/// An open chunk as a scan saw it.
pub(crate) struct OpenSnapshot {
    pub batch: Arc<Batch>,
    pub sorted: bool,
    pub min: i64,
    pub max: i64,
}

impl OpenSnapshot {
    /// Whether the whole snapshot can be handed out as is (sorted, all in `[start, end)`).
    pub fn whole(&self, start: i64, end: i64) -> bool {
        self.sorted && self.min >= start && self.max < end
    }

    /// Entries in `[start, end)`, sorted by time, appended to `out`.
    pub fn range_into(&self, start: i64, end: i64, out: &mut Batch) {
        let b = &*self.batch;
        if self.sorted {
            let i0 = b.ts.partition_point(|&t| t < start);
            let i1 = b.ts.partition_point(|&t| t < end);
            for i in i0..i1 {
                out.push(b.ts[i], b.line(i), b.metadata(i).iter());
            }
        } else {
            let mut idx: Vec<u32> = (0..b.len() as u32)
                .filter(|&i| {
                    let t = b.ts[i as usize];
                    t >= start && t < end
                })
                .collect();
            idx.sort_by_key(|&i| b.ts[i as usize]);
            for i in idx {
                let i = i as usize;
                out.push(b.ts[i], b.line(i), b.metadata(i).iter());
            }
        }
    }
}
