//! The data model shared by ingest, storage and LogQL: entries, streams, and the read seam
//! ([`LogSource`]) through which query engines see a tenant's logs.

use std::ops::ControlFlow;
use std::sync::Arc;

use async_trait::async_trait;
use common::{Labels, Matcher, TenantId, TenantSet};

use crate::Error;

/// Structured metadata of one entry: name/value pairs in the order they were pushed.
pub type Metadata = Vec<(String, String)>;

/// One log line as pushed.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Unix nanoseconds.
    pub ts: i64,
    /// The line (Loki lines are UTF-8 strings).
    pub line: String,
    /// Structured metadata (not indexed).
    pub metadata: Metadata,
}

/// The entries of one stream in one push.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamPush {
    /// Stream labels, sorted, validated.
    pub labels: Labels,
    /// Entries in push order.
    pub entries: Vec<Entry>,
}

/// A stream as the store knows it.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    /// Owner.
    pub tenant: TenantId,
    /// Stream labels (without `__tenant_id__`; the engine adds it for federated reads).
    pub labels: Arc<Labels>,
    /// Stable hash of `labels`.
    pub fingerprint: u64,
}

/// A decoded, columnar run of entries of one stream, oldest first.
///
/// Lines are concatenated in `lines`; entry `i` is `lines[line_ends[i-1]..line_ends[i]]` (with
/// `line_ends[-1] = 0`). Keeping lines contiguous lets a line filter run one substring search over
/// the whole batch. Structured metadata is interned per batch: `meta_table` holds each distinct
/// name/value pair once and entry `i` refers to its pairs by index,
/// `meta_refs[meta_ends[i-1]..meta_ends[i]]` — so decoding and dropping a batch costs no per-entry
/// reference counting, and equal metadata compares as equal index lists.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Unix nanoseconds, non-decreasing.
    pub ts: Vec<i64>,
    /// End offset of each line in `lines`.
    pub line_ends: Vec<u32>,
    /// All lines, back to back.
    pub lines: Vec<u8>,
    /// End offset of each entry's metadata in `meta_refs`.
    pub meta_ends: Vec<u32>,
    /// Indexes into `meta_table`, entry after entry.
    pub meta_refs: Vec<u32>,
    /// The distinct metadata pairs of this batch.
    pub meta_table: Vec<(Arc<str>, Arc<str>)>,
}

/// The structured metadata of one entry of a [`Batch`].
#[derive(Debug, Clone, Copy)]
pub struct Meta<'a> {
    refs: &'a [u32],
    table: &'a [(Arc<str>, Arc<str>)],
}

impl<'a> Meta<'a> {
    /// No metadata.
    pub const EMPTY: Meta<'static> = Meta {
        refs: &[],
        table: &[],
    };

    /// The pairs, in push order.
    pub fn iter(&self) -> impl Iterator<Item = &'a (Arc<str>, Arc<str>)> + 'a {
        let table = self.table;
        self.refs.iter().map(move |&r| &table[r as usize])
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.refs.len()
    }

    /// True when the entry has no metadata.
    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }

    /// The pair indexes into the batch's table (equal metadata of one batch has equal indexes).
    pub fn refs(&self) -> &'a [u32] {
        self.refs
    }
}

impl Batch {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// The line of entry `i`.
    pub fn line(&self, i: usize) -> &[u8] {
        let start = if i == 0 {
            0
        } else {
            self.line_ends[i - 1] as usize
        };
        &self.lines[start..self.line_ends[i] as usize]
    }

    /// The structured metadata of entry `i`.
    pub fn metadata(&self, i: usize) -> Meta<'_> {
        let start = if i == 0 {
            0
        } else {
            self.meta_ends[i - 1] as usize
        };
        Meta {
            refs: &self.meta_refs[start..self.meta_ends[i] as usize],
            table: &self.meta_table,
        }
    }

    /// The table index of a pair, adding it when new (tables are small: a linear scan, pointer
    /// equality first).
    pub fn intern(&mut self, name: &Arc<str>, value: &Arc<str>) -> u32 {
        let found = self.meta_table.iter().position(|(n, v)| {
            (Arc::ptr_eq(n, name) || n == name) && (Arc::ptr_eq(v, value) || v == value)
        });
        match found {
            Some(i) => i as u32,
            None => {
                self.meta_table.push((name.clone(), value.clone()));
                (self.meta_table.len() - 1) as u32
            }
        }
    }

    /// Appends one entry (metadata pairs owned or borrowed).
    pub fn push<P: std::borrow::Borrow<(Arc<str>, Arc<str>)>>(
        &mut self,
        ts: i64,
        line: &[u8],
        meta: impl IntoIterator<Item = P>,
    ) {
        self.ts.push(ts);
        self.lines.extend_from_slice(line);
        self.line_ends.push(self.lines.len() as u32);
        for p in meta {
            let (n, v) = p.borrow();
            let r = self.intern(n, v);
            self.meta_refs.push(r);
        }
        self.meta_ends.push(self.meta_refs.len() as u32);
    }

    /// Removes every entry, keeping capacity.
    pub fn clear(&mut self) {
        self.ts.clear();
        self.line_ends.clear();
        self.lines.clear();
        self.meta_ends.clear();
        self.meta_refs.clear();
        self.meta_table.clear();
    }

    /// Entry `i`'s metadata as owned pairs (tests and diagnostics).
    pub fn metadata_vec(&self, i: usize) -> Vec<(Arc<str>, Arc<str>)> {
        self.metadata(i).iter().cloned().collect()
    }
}

/// What a query wants read.
#[derive(Debug, Clone)]
pub struct ScanRequest {
    /// Tenants to read (one, or several when federated).
    pub tenants: TenantSet,
    /// Stream selector; at least one matcher.
    pub matchers: Vec<Matcher>,
    /// Inclusive start, unix ns.
    pub start: i64,
    /// Exclusive end, unix ns.
    pub end: i64,
    /// Substrings every wanted line contains (from `|=` filters); a store may skip chunks or blocks
    /// that provably contain none of them. Purely an optimisation: the engine filters again.
    pub required: Vec<Vec<u8>>,
}

/// Per-stream totals in a time range (for series, labels, index stats and volume).
#[derive(Debug, Clone)]
pub struct StreamStats {
    /// The stream.
    pub info: StreamInfo,
    /// Entries in range (approximate: whole chunks overlapping the range).
    pub entries: u64,
    /// Line bytes in range (approximate like `entries`).
    pub bytes: u64,
    /// Chunks overlapping the range.
    pub chunks: u64,
}

/// Counters a scan reports for the query stats block.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanStats {
    /// Chunks decoded.
    pub chunks: u64,
    /// Entries handed to the sink.
    pub entries: u64,
    /// Line bytes handed to the sink.
    pub bytes: u64,
}

/// The read seam: engines and APIs read logs only through this trait.
#[async_trait]
pub trait LogSource: Send + Sync {
    /// Calls `sink` with batches of entries in `[start, end)` of every matching stream. Batches of
    /// one stream arrive in time order; batches of different streams may interleave. The sink stops
    /// the scan by returning `ControlFlow::Break`.
    async fn scan(
        &self,
        req: &ScanRequest,
        sink: &mut (dyn for<'s, 'b> FnMut(&'s StreamInfo, &'b Batch) -> ControlFlow<()> + Send),
    ) -> Result<ScanStats, Error>;

    /// Streams matching `matchers` that have entries overlapping `[start, end)`, with totals.
    async fn streams(
        &self,
        tenants: &TenantSet,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<StreamStats>, Error>;
}

/// Per-tenant limits the store enforces on a push.
#[derive(Debug, Clone, Copy)]
pub struct PushLimits {
    /// Most streams the tenant may have (0 = unlimited); a push creating more is refused whole.
    pub max_streams: usize,
    /// Entries older than the newest entry of their stream by more than this are refused.
    pub ooo_window_ns: i64,
}

/// What the store did with a push.
#[derive(Debug, Clone, Default)]
pub struct PushResult {
    /// Entries written.
    pub accepted: usize,
    /// Loki-style reasons for entries refused by the store (out of order, …).
    pub rejected: Vec<String>,
}

/// The write seam: the push path reaches storage only through this trait (a local WAL today, a
/// partitioned log later).
#[async_trait]
pub trait LogWriter: Send + Sync {
    /// Durably writes `streams` for `tenant`; returns once the accepted entries are in the WAL.
    async fn push(
        &self,
        tenant: &TenantId,
        streams: Vec<StreamPush>,
        limits: &PushLimits,
    ) -> Result<PushResult, Error>;
}
