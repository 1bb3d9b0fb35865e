//! The trace store: per-tenant heads of live traces rebuilt from a WAL, immutable Parquet blocks
//! in the object store sorted by trace id, retention — behind one cloneable [`TraceStore`] handle
//! that implements [`TraceWriter`] and [`TraceSource`].
//!
//! Write path: `push` checks each span against its trace's size limit, writes one WAL record and
//! waits until it is durable, then adds the spans to their traces in the head (late spans of a
//! trace simply join it; parts of one trace in several blocks are merged on read).
//! `maintenance` writes a tenant's head into one block when it is big or old enough, then
//! truncates the WAL. Reads use the per-block trace-id index to touch one row group per block
//! holding a trace. Formats: `crates/traces/DESIGN.md`.

mod block;
mod codec;
mod filter;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use common::config::StorageConfig;
use common::limits::Overrides;
use common::{TenantId, TenantSet};
use parking_lot::{Mutex, RwLock};
use storage::block::{BlockMeta, BlockStore};
use storage::wal::{Wal, WalOptions};
use ulid::Ulid;

use self::block::{build_block, BlockReader, DATA_FILE, FORMAT_VERSION, INDEX_FILE};
use self::codec::{decode_wal_record, WalRecord};
use self::filter::{Bits, Filter};
use crate::model::{
    PushLimits, PushResult, ScanStats, Span, Trace, TraceId, TraceScan, TraceSource, TraceWriter,
};
use crate::Error;

/// Signal name of trace blocks and WAL folders.
pub(crate) const SIGNAL: &str = "traces";
/// Block lists are re-read from the bucket after this long (other nodes may add blocks).
const BLOCK_LIST_TTL: Duration = Duration::from_secs(30);
/// Block readers (trace-id index + Parquet footer) kept in memory.
const READER_CACHE_BLOCKS: usize = 1024;
/// Blocks without `meta.json` older than this are removed by maintenance.
const PARTIAL_BLOCK_MIN_AGE: Duration = Duration::from_secs(3600);
const WAL_ID_FILE: &str = "wal_id";
/// At most this many distinct refusal messages are returned per push.
const MAX_PUSH_ERRORS: usize = 10;

/// Tuning of the head and block cutting.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// A tenant's head is written into a block once its spans take this many bytes (WAL
    /// encoding; the Parquet block is ~10× smaller).
    pub block_max_bytes: u64,
    /// ... or once its oldest data arrived this long ago (ns).
    pub block_max_age_ns: i64,
    /// A row group is closed at the first trace boundary after this many spans.
    pub row_group_spans: usize,
    /// zstd level of Parquet pages.
    pub zstd_level: i32,
    /// A scan looks for further parts of a trace (late spans cut into another block) in blocks
    /// up to this far (ns) outside its time range.
    pub trace_window_ns: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            block_max_bytes: 256 << 20,
            block_max_age_ns: 30 * 60 * 1_000_000_000,
            row_group_spans: 4096,
            zstd_level: 3,
            trace_window_ns: 3600 * 1_000_000_000,
        }
    }
}

/// Per-tenant figures for `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantTraceStats {
    /// Traces in the head (including those being written into a block).
    pub head_traces: u64,
    /// Spans in the head.
    pub head_spans: u64,
    /// Encoded bytes of those spans.
    pub head_bytes: u64,
    /// Bytes of WAL segments on disk.
    pub wal_bytes: u64,
    /// Blocks in the object store (as last listed).
    pub blocks: u64,
    /// Bytes of those blocks (Parquet file + index).
    pub block_bytes: u64,
    /// Spans in those blocks.
    pub block_spans: u64,
}

/// Figures of the whole store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceStoreStats {
    /// Per tenant (also tenants that only have blocks), sorted.
    pub tenants: BTreeMap<TenantId, TenantTraceStats>,
}

/// The part of one trace in the head.
#[derive(Clone, Default)]
struct HeadTrace {
    /// Shared copy-on-write with readers (a push after a read snapshot copies it once).
    spans: Arc<Vec<Span>>,
    /// Encoded bytes of the spans, including those reserved by pushes not yet durable.
    bytes: usize,
    start: u64,
    end: u64,
}

type Traces = HashMap<TraceId, HeadTrace>;

#[derive(Default)]
struct Head {
    traces: Traces,
    spans: u64,
    bytes: u64,
}

impl Head {
    fn add(&mut self, s: Span) {
        let t = self.traces.entry(s.trace_id).or_default();
        if t.spans.is_empty() {
            t.start = s.start_ns;
            t.end = s.end_ns.max(s.start_ns);
        } else {
            t.start = t.start.min(s.start_ns);
            t.end = t.end.max(s.end_ns);
        }
        Arc::make_mut(&mut t.spans).push(s);
        self.spans += 1;
    }
}

/// A tenant's live state on this node.
struct TenantDb {
    head: Mutex<Head>,
    /// Heads taken out by a cut whose block is not listed yet; still read by queries.
    frozen: Mutex<Vec<Arc<Head>>>,
    wal: Wal,
    /// Names this WAL in block metas, so that replay skips segments already in a block.
    wal_id: String,
    /// Pushes and read planning hold it shared; a cut holds it exclusively to move spans between
    /// head and block atomically for readers.
    gate: Arc<tokio::sync::RwLock<()>>,
    /// One cut per tenant at a time.
    maint: tokio::sync::Mutex<()>,
    /// Wall-clock ns of the oldest arrival in the head since the last cut (`i64::MAX`: none).
    head_since: AtomicI64,
    /// A size-triggered cut is running.
    cutting: AtomicBool,
}

#[derive(Default)]
struct BlockList {
    metas: Arc<Vec<BlockMeta>>,
    fetched: Option<Instant>,
    /// Blocks this node wrote (kept when a listing raced with their upload).
    own: HashSet<Ulid>,
}

struct Inner {
    data_dir: PathBuf,
    wal_opts: WalOptions,
    overrides: Overrides,
    blocks: BlockStore,
    opts: StoreOptions,
    tenants: RwLock<HashMap<TenantId, Arc<TenantDb>>>,
    block_lists: Mutex<HashMap<TenantId, BlockList>>,
    readers: Mutex<HashMap<Ulid, Arc<BlockReader>>>,
    closed: AtomicBool,
    maintenance: tokio::sync::Mutex<()>,
    create: tokio::sync::Mutex<()>,
}

/// The trace store of all tenants. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct TraceStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TraceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceStore")
            .field("data_dir", &self.inner.data_dir)
            .finish()
    }
}

fn tenant_dir(data_dir: &Path, tenant: &TenantId) -> PathBuf {
    data_dir.join(tenant.as_str()).join(SIGNAL)
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn io_err(context: String, source: std::io::Error) -> Error {
    Error::Io { context, source }
}

fn stat(meta: &BlockMeta, key: &str) -> u64 {
    meta.stats.get(key).and_then(|v| v.as_u64()).unwrap_or(0)
}

/// `end_ns == 0` means unbounded (a defaulted request), as does `u64::MAX`.
fn norm_end(end: u64) -> u64 {
    if end == 0 {
        u64::MAX
    } else {
        end
    }
}

/// Whether `[s, e]` (inclusive) overlaps `[start, end)`.
fn overlaps(s: u64, e: u64, start: u64, end: u64) -> bool {
    s < end && e >= start
}

fn meta_overlaps(m: &BlockMeta, start: u64, end: u64) -> bool {
    overlaps(
        m.min_time.max(0) as u64,
        m.max_time.max(0) as u64,
        start,
        end,
    )
}

/// Sorts spans by (start, span id) and drops exact duplicates (a span stored twice, e.g. a
/// client retry).
fn merge_spans(spans: &mut Vec<Span>) {
    spans.sort_by_key(|a| (a.start_ns, a.span_id));
    spans.dedup();
}

fn trace_too_large(max: usize, adding: usize, id: &TraceId, tenant: &TenantId) -> String {
    format!(
        "TRACE_TOO_LARGE: max size of trace ({max}) exceeded while adding {adding} bytes to trace {} for tenant {tenant}",
        hex::encode(id)
    )
}

/// The scan's hints, resolved.
struct Hints<'a> {
    services: &'a [String],
    names: &'a [String],
}

impl Hints<'_> {
    fn spans(&self, spans: &[Span]) -> (bool, bool) {
        let svc = self.services.is_empty()
            || spans
                .iter()
                .any(|s| self.services.iter().any(|x| x == s.origin.service_name()));
        let name = self.names.is_empty() || spans.iter().any(|s| self.names.contains(&s.name));
        (svc, name)
    }
}

/// Per block of a scan: which row groups may hold the hinted services and names.
fn row_group_hints(r: &BlockReader, h: &Hints<'_>) -> Vec<(bool, bool)> {
    let ix = &r.index;
    let svc_ids: Vec<u32> = ix
        .services
        .iter()
        .enumerate()
        .filter(|(_, s)| h.services.contains(s))
        .map(|(i, _)| i as u32)
        .collect();
    let name_ids: Option<Vec<u32>> = ix.names.as_ref().map(|names| {
        names
            .iter()
            .enumerate()
            .filter(|(_, s)| h.names.contains(s))
            .map(|(i, _)| i as u32)
            .collect()
    });
    ix.row_groups
        .iter()
        .map(|g| {
            let svc = h.services.is_empty() || g.services.iter().any(|s| svc_ids.contains(s));
            let name = h.names.is_empty()
                || match &name_ids {
                    None => true,
                    Some(ids) => g.names.iter().any(|s| ids.contains(s)),
                };
            (svc, name)
        })
        .collect()
}

/// A row group of a block decoded by a scan: its row group number and the candidates' spans.
type LoadedRowGroup = (u32, HashMap<TraceId, Vec<Span>>);

/// A trace a scan will deliver: its parts and whether any may satisfy the hints.
#[derive(Default)]
struct Cand {
    svc: bool,
    name: bool,
    head: Vec<Arc<Vec<Span>>>,
    /// (reader, row group, first row, rows).
    blocks: Vec<(u32, u32, u32, u32)>,
    /// Earliest start and latest end of the parts (their difference bounds the trace's duration
    /// from above).
    times: Option<(u64, u64)>,
}

impl Cand {
    fn time(&mut self, start: u64, end: u64) {
        self.times = Some(match self.times {
            None => (start, end),
            Some((s, e)) => (s.min(start), e.max(end)),
        });
    }
}

/// A candidate trace's part in a row group: (trace, first row, rows, has other parts).
type Member = (TraceId, u32, u32, bool);

impl TraceStore {
    /// Opens the store with default [`StoreOptions`]: replays the WAL of every tenant found under
    /// `<data_dir>/<tenant>/traces/wal` and lists the blocks of every tenant in the bucket, so a
    /// node with an empty data dir serves what the bucket holds.
    pub async fn open(
        cfg: &StorageConfig,
        overrides: Overrides,
        blocks: BlockStore,
    ) -> Result<Self, Error> {
        Self::open_with(cfg, overrides, blocks, StoreOptions::default()).await
    }

    /// [`TraceStore::open`] with explicit options.
    pub async fn open_with(
        cfg: &StorageConfig,
        overrides: Overrides,
        blocks: BlockStore,
        opts: StoreOptions,
    ) -> Result<Self, Error> {
        let store = Self {
            inner: Arc::new(Inner {
                data_dir: cfg.data_dir.clone(),
                wal_opts: WalOptions::from_config(cfg),
                overrides,
                blocks,
                opts,
                tenants: RwLock::new(HashMap::new()),
                block_lists: Mutex::new(HashMap::new()),
                readers: Mutex::new(HashMap::new()),
                closed: AtomicBool::new(false),
                maintenance: tokio::sync::Mutex::new(()),
                create: tokio::sync::Mutex::new(()),
            }),
        };
        let entries = match std::fs::read_dir(&cfg.data_dir) {
            Ok(e) => e
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| io_err(format!("list {}", cfg.data_dir.display()), e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(format!("list {}", cfg.data_dir.display()), e)),
        };
        for entry in entries {
            let Some(tenant) = entry
                .file_name()
                .to_str()
                .and_then(|n| TenantId::new(n).ok())
            else {
                continue;
            };
            if !tenant_dir(&cfg.data_dir, &tenant).join("wal").is_dir() {
                continue;
            }
            store.open_tenant(&tenant).await?;
        }
        for t in store.inner.blocks.list_tenants(SIGNAL).await? {
            store.block_list(&t, false).await?;
        }
        Ok(store)
    }

    /// Opens (replaying) or creates the tenant's WAL and head.
    async fn open_tenant(&self, tenant: &TenantId) -> Result<Arc<TenantDb>, Error> {
        let dir = tenant_dir(&self.inner.data_dir, tenant);
        std::fs::create_dir_all(&dir)
            .map_err(|e| io_err(format!("create {}", dir.display()), e))?;
        let id_path = dir.join(WAL_ID_FILE);
        let wal_id = match std::fs::read_to_string(&id_path) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => {
                let id = Ulid::new().to_string();
                std::fs::write(&id_path, &id)
                    .map_err(|e| io_err(format!("write {}", id_path.display()), e))?;
                id
            }
        };
        // Segments below the newest block cut from this WAL are in the bucket already (a crash
        // between upload and truncation leaves them behind): replay skips them.
        let metas = self.block_list(tenant, true).await?;
        let skip_before = metas
            .iter()
            .filter(|m| m.stats.get("wal_id").and_then(|v| v.as_str()) == Some(wal_id.as_str()))
            .map(|m| stat(m, "wal_segment"))
            .max()
            .unwrap_or(0);
        let mut head = Head::default();
        let started = Instant::now();
        let (mut records, mut bad) = (0u64, 0u64);
        let wal = Wal::open(&dir.join("wal"), self.inner.wal_opts.clone(), |seg, rec| {
            if seg < skip_before {
                return Ok(());
            }
            records += 1;
            match decode_wal_record(rec) {
                Ok(spans) => {
                    for (s, n) in spans {
                        let id = s.trace_id;
                        head.add(s);
                        if let Some(t) = head.traces.get_mut(&id) {
                            t.bytes += n;
                        }
                        head.bytes += n as u64;
                    }
                }
                // A CRC-valid record we cannot parse is a bug or a newer format: keep serving the
                // rest rather than refusing to start.
                Err(e) => {
                    bad += 1;
                    tracing::error!(tenant = %tenant, error = %e, "skipping undecodable traces wal record");
                }
            }
            Ok(())
        })?;
        if skip_before > 0 {
            wal.truncate_before(skip_before)?;
        }
        tracing::info!(
            tenant = %tenant,
            records,
            bad,
            traces = head.traces.len(),
            spans = head.spans,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "traces wal replayed"
        );
        let since = if head.spans > 0 { now_ns() } else { i64::MAX };
        let db = Arc::new(TenantDb {
            head: Mutex::new(head),
            frozen: Mutex::new(Vec::new()),
            wal,
            wal_id,
            gate: Arc::new(tokio::sync::RwLock::new(())),
            maint: tokio::sync::Mutex::new(()),
            head_since: AtomicI64::new(since),
            cutting: AtomicBool::new(false),
        });
        self.inner
            .tenants
            .write()
            .insert(tenant.clone(), db.clone());
        Ok(db)
    }

    fn tenant_db(&self, tenant: &TenantId) -> Option<Arc<TenantDb>> {
        self.inner.tenants.read().get(tenant).cloned()
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Io {
                context: "trace store".into(),
                source: std::io::Error::other("the trace store is closed"),
            });
        }
        Ok(())
    }

    async fn db_for_write(&self, tenant: &TenantId) -> Result<Arc<TenantDb>, Error> {
        self.check_open()?;
        if let Some(db) = self.tenant_db(tenant) {
            return Ok(db);
        }
        let _c = self.inner.create.lock().await;
        if let Some(db) = self.tenant_db(tenant) {
            return Ok(db);
        }
        self.open_tenant(tenant).await
    }

    async fn push_spans(
        &self,
        tenant: &TenantId,
        spans: Vec<Span>,
        limits: &PushLimits,
    ) -> Result<PushResult, Error> {
        let mut out = PushResult::default();
        if spans.is_empty() {
            return Ok(out);
        }
        let db = self.db_for_write(tenant).await?;
        let gate = db.gate.clone().read_owned().await;
        self.check_open()?;
        // Encode outside the head lock; refusals (rare) re-encode the accepted spans.
        let mut rec = WalRecord::new();
        let sizes: Vec<usize> = spans.iter().map(|s| rec.push(s)).collect();
        let max = limits.max_bytes_per_trace;
        let mut accepted = vec![true; spans.len()];
        let mut reserved: HashMap<TraceId, usize> = HashMap::new();
        {
            let mut head = db.head.lock();
            let mut refused: HashSet<TraceId> = HashSet::new();
            for (i, s) in spans.iter().enumerate() {
                let r = reserved.entry(s.trace_id).or_default();
                if max > 0 {
                    let cur = head.traces.get(&s.trace_id).map_or(0, |t| t.bytes) + *r;
                    if cur + sizes[i] > max {
                        accepted[i] = false;
                        out.rejected += 1;
                        if refused.insert(s.trace_id) && out.errors.len() < MAX_PUSH_ERRORS {
                            out.errors
                                .push(trace_too_large(max, sizes[i], &s.trace_id, tenant));
                        }
                        continue;
                    }
                }
                *r += sizes[i];
                out.accepted += 1;
            }
            reserved.retain(|_, n| *n > 0);
            for (id, n) in &reserved {
                head.traces.entry(*id).or_default().bytes += *n;
                head.bytes += *n as u64;
            }
        }
        if out.accepted == 0 {
            return Ok(out);
        }
        if out.rejected > 0 {
            rec = WalRecord::new();
            for (s, ok) in spans.iter().zip(&accepted) {
                if *ok {
                    rec.push(s);
                }
            }
        }
        let rec = rec.finish();
        // The WAL write and the apply run in a task of their own: when the caller goes away (a
        // client disconnect drops the handler), a record that may already be durable must still
        // become visible, or the next cut would truncate it away without it being in a block.
        let db2 = db.clone();
        let head_bytes = tokio::spawn(async move {
            let _gate = gate;
            if let Err(e) = db2.wal.append(rec).await {
                let mut head = db2.head.lock();
                for (id, n) in &reserved {
                    if let Some(t) = head.traces.get_mut(id) {
                        t.bytes -= *n;
                        if t.spans.is_empty() && t.bytes == 0 {
                            head.traces.remove(id);
                        }
                    }
                    head.bytes -= *n as u64;
                }
                return Err(Error::from(e));
            }
            let mut head = db2.head.lock();
            for (s, ok) in spans.into_iter().zip(accepted) {
                if ok {
                    head.add(s);
                }
            }
            db2.head_since.fetch_min(now_ns(), Ordering::AcqRel);
            Ok(head.bytes)
        })
        .await
        .map_err(|e| io_err("trace push task".into(), std::io::Error::other(e)))??;
        if head_bytes >= self.inner.opts.block_max_bytes && !db.cutting.swap(true, Ordering::AcqRel)
        {
            // Size-triggered cut in the background; the periodic maintenance catches anything else.
            let store = self.clone();
            let tenant = tenant.clone();
            tokio::spawn(async move {
                if let Some(db) = store.tenant_db(&tenant) {
                    if db.head.lock().bytes >= store.inner.opts.block_max_bytes {
                        if let Err(e) = store.cut(&tenant, db.clone()).await {
                            tracing::warn!(tenant = %tenant, error = %e, "trace block cut failed");
                        }
                    }
                    db.cutting.store(false, Ordering::Release);
                }
            });
        }
        Ok(out)
    }

    // --------------------------------------------------------------------------------------------
    // Blocks

    async fn block_list(
        &self,
        tenant: &TenantId,
        refresh: bool,
    ) -> Result<Arc<Vec<BlockMeta>>, Error> {
        if !refresh {
            if let Some(l) = self.inner.block_lists.lock().get(tenant) {
                if l.fetched.is_some_and(|f| f.elapsed() < BLOCK_LIST_TTL) {
                    return Ok(l.metas.clone());
                }
            }
        }
        let mut listed = self.inner.blocks.list_blocks(tenant, SIGNAL).await?;
        listed.retain(|m| {
            let ok = m.version == FORMAT_VERSION;
            if !ok {
                tracing::warn!(tenant = %tenant, block = %m.ulid, version = m.version, "skipping trace block of unknown format version");
            }
            ok
        });
        let mut lists = self.inner.block_lists.lock();
        let l = lists.entry(tenant.clone()).or_default();
        for m in l.metas.iter() {
            if l.own.contains(&m.ulid) && !listed.iter().any(|x| x.ulid == m.ulid) {
                listed.push(m.clone());
            }
        }
        // A compacted block supersedes its sources at once (no compaction of trace blocks yet,
        // but a listing written by a later version must not show spans twice).
        let superseded: HashSet<Ulid> = listed
            .iter()
            .flat_map(|m| m.sources.iter().copied())
            .collect();
        listed.retain(|m| !superseded.contains(&m.ulid));
        listed.sort_by_key(|m| (m.min_time, m.ulid));
        l.metas = Arc::new(listed);
        l.fetched = Some(Instant::now());
        Ok(l.metas.clone())
    }

    /// Adds a block this node wrote to the tenant's list.
    fn add_block(&self, tenant: &TenantId, meta: BlockMeta) {
        let mut lists = self.inner.block_lists.lock();
        let l = lists.entry(tenant.clone()).or_default();
        l.own.insert(meta.ulid);
        let mut v: Vec<BlockMeta> = l.metas.iter().cloned().collect();
        v.push(meta);
        v.sort_by_key(|m| (m.min_time, m.ulid));
        l.metas = Arc::new(v);
    }

    fn cache_reader(&self, ulid: Ulid, r: Arc<BlockReader>) {
        let mut cache = self.inner.readers.lock();
        if cache.len() >= READER_CACHE_BLOCKS {
            // Bounded, not an LRU: drop an arbitrary entry.
            if let Some(k) = cache.keys().next().copied() {
                cache.remove(&k);
            }
        }
        cache.insert(ulid, r);
    }

    /// The block's reader (index + footer), from the cache or the bucket; `None` when the block
    /// was deleted since it was listed.
    async fn reader(
        &self,
        tenant: &TenantId,
        meta: &BlockMeta,
    ) -> Result<Option<Arc<BlockReader>>, Error> {
        if let Some(r) = self.inner.readers.lock().get(&meta.ulid) {
            return Ok(Some(r.clone()));
        }
        let data_len = stat(meta, "data_bytes");
        if data_len < 8 {
            return Err(Error::Corrupt(format!(
                "trace block {} meta.json has no data_bytes",
                meta.ulid
            )));
        }
        let blocks = &self.inner.blocks;
        let loaded = async {
            let index = blocks.get(tenant, SIGNAL, meta.ulid, INDEX_FILE).await?;
            BlockReader::load(index, data_len, |r| async move {
                Ok(blocks
                    .get_range(tenant, SIGNAL, meta.ulid, DATA_FILE, r)
                    .await?)
            })
            .await
        }
        .await;
        match loaded {
            Ok(r) => {
                let r = Arc::new(r);
                self.cache_reader(meta.ulid, r.clone());
                Ok(Some(r))
            }
            Err(Error::Storage(e)) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Readers of the tenant's listed blocks overlapping `[start, end)`.
    async fn readers(
        &self,
        tenant: &TenantId,
        metas: &[BlockMeta],
        start: u64,
        end: u64,
    ) -> Result<Vec<(BlockMeta, Arc<BlockReader>)>, Error> {
        let mut out = Vec::new();
        for m in metas.iter().filter(|m| meta_overlaps(m, start, end)) {
            if let Some(r) = self.reader(tenant, m).await? {
                out.push((m.clone(), r));
            }
        }
        Ok(out)
    }

    /// Reads rows `sel` of row group `rg` of a block; empty when the block is gone.
    async fn read_rows(
        &self,
        tenant: &TenantId,
        meta: &BlockMeta,
        r: &BlockReader,
        rg: usize,
        sel: &[(u32, u32)],
        stats: &mut ScanStats,
    ) -> Result<Vec<Span>, Error> {
        let range = r.row_group_range(rg);
        let data = match self
            .inner
            .blocks
            .get_range(tenant, SIGNAL, meta.ulid, DATA_FILE, range.clone())
            .await
        {
            Ok(d) => d,
            // Deleted (retention) since the read was planned.
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        stats.bytes += data.len() as u64;
        r.read_rows(rg, data, range.start, sel)
    }

    /// Evaluates `f` on the rows of a row group's candidate traces (`members`, in row order):
    /// the atoms each trace's part there satisfies. Reads only the filter's columns, and nothing
    /// when the row group's statistics rule every atom out.
    #[allow(clippy::too_many_arguments)]
    async fn filter_row_group(
        &self,
        tenant: &TenantId,
        meta: &BlockMeta,
        r: &BlockReader,
        rg: usize,
        members: &[Member],
        f: &Filter,
        stats: &mut ScanStats,
    ) -> Result<HashMap<TraceId, Bits>, Error> {
        let mut out = HashMap::with_capacity(members.len());
        let mask = f.row_group_bits(r.meta.metadata().row_group(rg));
        if mask == 0 {
            stats.row_groups_pruned += 1;
            return Ok(out);
        }
        let ranges = r.column_ranges(rg, f.columns());
        let blocks = &self.inner.blocks;
        let fetched = futures::future::join_all(
            ranges
                .iter()
                .map(|x| blocks.get_range(tenant, SIGNAL, meta.ulid, DATA_FILE, x.clone())),
        )
        .await;
        let mut parts = Vec::with_capacity(ranges.len());
        for (x, got) in ranges.iter().zip(fetched) {
            match got {
                Ok(d) => {
                    stats.bytes += d.len() as u64;
                    parts.push((x.start, d));
                }
                // Deleted (retention) since the read was planned: nothing of it is delivered.
                Err(e) if e.is_not_found() => return Ok(out),
                Err(e) => return Err(e.into()),
            }
        }
        let sel: Vec<(u32, u32)> = members.iter().map(|&(_, row, n, _)| (row, n)).collect();
        let batches = r.read_columns(rg, parts, f.columns(), &sel)?;
        let mut bits = Vec::with_capacity(sel.iter().map(|x| x.1 as usize).sum());
        for b in &batches {
            f.batch_bits(b, mask, &mut bits)?;
        }
        let mut at = 0usize;
        for &(id, _, n, _) in members {
            let rows = bits
                .get(at..at + n as usize)
                .ok_or_else(|| Error::Corrupt("trace block: fewer rows than indexed".into()))?;
            out.insert(id, rows.iter().fold(0, |a, b| a | b));
            at += n as usize;
        }
        Ok(out)
    }

    /// Writes everything in the tenant's head into one block, then truncates the WAL; one cut per
    /// tenant at a time (`db.maint`). Runs in a task of its own so that an abandoned caller does
    /// not leave a half-done cut behind.
    async fn cut(&self, tenant: &TenantId, db: Arc<TenantDb>) -> Result<(), Error> {
        let (store, tenant) = (self.clone(), tenant.clone());
        tokio::spawn(async move {
            let _m = db.maint.lock().await;
            store.cut_now(&tenant, &db).await
        })
        .await
        .map_err(|e| io_err("trace block cut task".into(), std::io::Error::other(e)))?
    }

    async fn cut_now(&self, tenant: &TenantId, db: &TenantDb) -> Result<(), Error> {
        let seg;
        let since;
        let frozen: Vec<Arc<Head>>;
        {
            let _g = db.gate.write().await;
            // Everything acknowledged so far is in segments below `seg`, and in the head.
            seg = db.wal.cut_segment()?;
            let head = std::mem::take(&mut *db.head.lock());
            let mut f = db.frozen.lock();
            if head.spans > 0 {
                f.push(Arc::new(head));
            }
            frozen = f.clone();
            since = db.head_since.swap(i64::MAX, Ordering::AcqRel);
        }
        if frozen.is_empty() {
            db.wal.truncate_before(seg)?;
            return Ok(());
        }
        let result = self.write_cut(tenant, db, frozen, seg).await;
        if result.is_err() {
            // The spans stay in `frozen` (readable) and the WAL is untouched; the next maintenance
            // retries even if no more data arrives.
            db.head_since.fetch_min(since, Ordering::AcqRel);
        }
        result
    }

    async fn write_cut(
        &self,
        tenant: &TenantId,
        db: &TenantDb,
        frozen: Vec<Arc<Head>>,
        seg: u64,
    ) -> Result<(), Error> {
        let (rg, level) = (self.inner.opts.row_group_spans, self.inner.opts.zstd_level);
        let parts = frozen.clone();
        let raw_bytes: u64 = frozen.iter().map(|h| h.bytes).sum();
        let mut built = tokio::task::spawn_blocking(move || {
            let mut map: BTreeMap<TraceId, Vec<&Span>> = BTreeMap::new();
            for h in &parts {
                for (id, t) in &h.traces {
                    if !t.spans.is_empty() {
                        map.entry(*id).or_default().extend(t.spans.iter());
                    }
                }
            }
            let mut traces: Vec<(TraceId, Vec<&Span>)> = map.into_iter().collect();
            for (_, v) in &mut traces {
                v.sort_by_key(|a| (a.start_ns, a.span_id));
            }
            build_block(&traces, rg, level)
        })
        .await
        .map_err(|e| io_err("build trace block".into(), std::io::Error::other(e)))??;
        let row_groups = built.trace_index.row_groups.len();
        let stats = serde_json::json!({
            "traces": built.traces,
            "spans": built.spans,
            "row_groups": row_groups,
            "raw_bytes": raw_bytes,
            "data_bytes": built.data.len(),
            "index_bytes": built.index.len(),
            "bytes": built.data.len() + built.index.len(),
            "wal_id": db.wal_id,
            "wal_segment": seg,
        });
        let meta = BlockMeta {
            ulid: Ulid::new(),
            signal: SIGNAL.to_string(),
            version: FORMAT_VERSION,
            min_time: built.min_ns.min(i64::MAX as u64) as i64,
            max_time: built.max_ns.min(i64::MAX as u64) as i64,
            level: 1,
            sources: Vec::new(),
            stats,
        };
        let reader = Arc::new(BlockReader::from_built(&mut built));
        let (data, index) = (
            std::mem::take(&mut built.data),
            std::mem::take(&mut built.index),
        );
        self.inner
            .blocks
            .put_block(
                tenant,
                &meta,
                vec![
                    (INDEX_FILE.to_string(), Bytes::from(index)),
                    (DATA_FILE.to_string(), Bytes::from(data)),
                ],
            )
            .await?;
        tracing::info!(
            tenant = %tenant, block = %meta.ulid, traces = built.traces, spans = built.spans,
            raw_bytes, bytes = stat(&meta, "bytes"), "trace block written"
        );
        self.cache_reader(meta.ulid, reader);
        {
            let _g = db.gate.write().await;
            db.frozen
                .lock()
                .retain(|h| !frozen.iter().any(|f| Arc::ptr_eq(f, h)));
            self.add_block(tenant, meta);
        }
        db.wal.truncate_before(seg)?;
        Ok(())
    }

    async fn delete_block(&self, tenant: &TenantId, m: &BlockMeta) -> Result<(), Error> {
        self.inner
            .blocks
            .delete_block(tenant, SIGNAL, m.ulid)
            .await?;
        self.inner.readers.lock().remove(&m.ulid);
        let mut lists = self.inner.block_lists.lock();
        if let Some(l) = lists.get_mut(tenant) {
            l.own.remove(&m.ulid);
            let v: Vec<BlockMeta> = l
                .metas
                .iter()
                .filter(|x| x.ulid != m.ulid)
                .cloned()
                .collect();
            l.metas = Arc::new(v);
        }
        Ok(())
    }

    // --------------------------------------------------------------------------------------------
    // Maintenance

    /// Writes heads that are big or old enough into blocks (truncating the WAL), deletes blocks
    /// past the tenant's `retention_period` (by their newest span end) and leftovers of failed
    /// uploads. Called periodically by the server with the wall clock (unix ns).
    pub async fn maintenance(&self, now_ns: i64) -> Result<(), Error> {
        let _m = self.inner.maintenance.lock().await;
        let mut tenants: BTreeSet<TenantId> = self.inner.tenants.read().keys().cloned().collect();
        tenants.extend(self.inner.blocks.list_tenants(SIGNAL).await?);
        let mut first_err = None;
        for t in tenants {
            if let Err(e) = self.maintain_tenant(&t, now_ns, false).await {
                tracing::warn!(tenant = %t, error = %e, "traces maintenance failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    async fn maintain_tenant(&self, tenant: &TenantId, now: i64, force: bool) -> Result<(), Error> {
        let opts = &self.inner.opts;
        if let Some(db) = self.tenant_db(tenant) {
            let since = db.head_since.load(Ordering::Acquire);
            let due = force
                || db.head.lock().bytes >= opts.block_max_bytes
                || !db.frozen.lock().is_empty()
                || (since != i64::MAX && now.saturating_sub(since) >= opts.block_max_age_ns);
            if due {
                self.cut(tenant, db.clone()).await?;
            }
        }
        if !force {
            let retention = self
                .inner
                .overrides
                .get(tenant)
                .retention_period
                .as_millis();
            if retention > 0 {
                let metas = self.block_list(tenant, true).await?;
                let expired = storage::expired(&metas, now, retention.saturating_mul(1_000_000));
                for m in metas.iter().filter(|m| expired.contains(&m.ulid)) {
                    tracing::info!(tenant = %tenant, block = %m.ulid, "deleting trace block past retention");
                    self.delete_block(tenant, m).await?;
                }
            }
            if let Err(e) = self
                .inner
                .blocks
                .gc_partial(tenant, SIGNAL, PARTIAL_BLOCK_MIN_AGE)
                .await
            {
                tracing::warn!(tenant = %tenant, error = %e, "removing partial trace blocks failed");
            }
        }
        Ok(())
    }

    /// Writes the whole head of every tenant into blocks now (tests, benchmark, shutdown hooks).
    pub async fn flush_all_to_blocks(&self) -> Result<(), Error> {
        let _m = self.inner.maintenance.lock().await;
        let tenants: Vec<TenantId> = self.inner.tenants.read().keys().cloned().collect();
        for t in tenants {
            self.maintain_tenant(&t, now_ns(), true).await?;
        }
        Ok(())
    }

    /// Shutdown: waits for in-flight pushes, makes the WAL durable and closes it. The head is not
    /// written into blocks; it is rebuilt from the WAL on the next start.
    pub async fn close(&self) -> Result<(), Error> {
        self.inner.closed.store(true, Ordering::Release);
        let dbs: Vec<Arc<TenantDb>> = self.inner.tenants.read().values().cloned().collect();
        for db in dbs {
            let _g = db.gate.write().await;
            db.wal.close()?;
        }
        Ok(())
    }

    /// Per-tenant figures (block figures from the last listing of each tenant's blocks).
    pub fn stats(&self) -> TraceStoreStats {
        let mut map: BTreeMap<TenantId, TenantTraceStats> = BTreeMap::new();
        for (t, db) in self.inner.tenants.read().iter() {
            let s = map.entry(t.clone()).or_default();
            {
                let h = db.head.lock();
                s.head_traces = h.traces.values().filter(|t| !t.spans.is_empty()).count() as u64;
                s.head_spans = h.spans;
                s.head_bytes = h.bytes;
            }
            for f in db.frozen.lock().iter() {
                s.head_traces += f.traces.len() as u64;
                s.head_spans += f.spans;
                s.head_bytes += f.bytes;
            }
            s.wal_bytes = db.wal.disk_size();
        }
        for (t, l) in self.inner.block_lists.lock().iter() {
            let s = map.entry(t.clone()).or_default();
            s.blocks = l.metas.len() as u64;
            s.block_bytes = l.metas.iter().map(|m| stat(m, "bytes")).sum();
            s.block_spans = l.metas.iter().map(|m| stat(m, "spans")).sum();
        }
        TraceStoreStats { tenants: map }
    }

    // --------------------------------------------------------------------------------------------
    // Reads

    /// The spans of trace `id` in one tenant: head, frozen heads and every block holding it.
    async fn trace_parts(
        &self,
        tenant: &TenantId,
        id: &TraceId,
        start: u64,
        end: u64,
        out: &mut Vec<Span>,
    ) -> Result<(), Error> {
        // Warm the block list and readers before taking the gate (which a pending cut makes pushes
        // wait for), so that it is held for in-memory work only in the common case.
        let metas = self.block_list(tenant, false).await?;
        self.readers(tenant, &metas, start, end).await?;
        let db = self.tenant_db(tenant);
        let readers;
        {
            let _g = match &db {
                Some(db) => Some(db.gate.read().await),
                None => None,
            };
            if let Some(db) = &db {
                if let Some(t) = db.head.lock().traces.get(id) {
                    out.extend(t.spans.iter().cloned());
                }
                for f in db.frozen.lock().iter() {
                    if let Some(t) = f.traces.get(id) {
                        out.extend(t.spans.iter().cloned());
                    }
                }
            }
            let metas = self.block_list(tenant, false).await?;
            readers = self.readers(tenant, &metas, start, end).await?;
        }
        let reads = readers.iter().filter_map(|(m, r)| {
            let (rg, i) = r.index.find(id)?;
            let sel = [(r.index.row[i], r.index.spans[i])];
            Some(async move {
                let mut st = ScanStats::default();
                self.read_rows(tenant, m, r, rg, &sel, &mut st).await
            })
        });
        for spans in futures::future::join_all(reads).await {
            out.extend(spans?);
        }
        Ok(())
    }

    async fn scan_tenant(
        &self,
        tenant: &TenantId,
        req: &TraceScan,
        sink: &mut (dyn for<'a, 'b> FnMut(&'a TenantId, &'b Trace) -> ControlFlow<()> + Send),
        stats: &mut ScanStats,
    ) -> Result<ControlFlow<()>, Error> {
        let (start, end) = (req.start_ns, norm_end(req.end_ns));
        let w = self.inner.opts.trace_window_ns;
        let (wstart, wend) = (start.saturating_sub(w), end.saturating_add(w));
        let hints = Hints {
            services: &req.service_names,
            names: &req.span_names,
        };
        let metas = self.block_list(tenant, false).await?;
        self.readers(tenant, &metas, wstart, wend).await?;
        let db = self.tenant_db(tenant);
        let mut cands: BTreeMap<TraceId, Cand> = BTreeMap::new();
        let readers;
        {
            let _g = match &db {
                Some(db) => Some(db.gate.read().await),
                None => None,
            };
            let metas = self.block_list(tenant, false).await?;
            readers = self.readers(tenant, &metas, wstart, wend).await?;
            // Traces with a part in the range...
            for (m, r) in &readers {
                if !meta_overlaps(m, start, end) {
                    continue;
                }
                let ix = &r.index;
                for i in 0..ix.ids.len() {
                    if overlaps(ix.start[i], ix.end[i], start, end) {
                        cands.entry(ix.ids[i]).or_default();
                    }
                }
            }
            let head = db.as_ref().map(|db| db.head.lock());
            let frozen = db.as_ref().map(|db| db.frozen.lock().clone());
            let heads: Vec<&Traces> = head
                .iter()
                .map(|h| &h.traces)
                .chain(frozen.iter().flatten().map(|f| &f.traces))
                .collect();
            for h in &heads {
                for (id, t) in h.iter() {
                    if !t.spans.is_empty() && overlaps(t.start, t.end, start, end) {
                        cands.entry(*id).or_default();
                    }
                }
            }
            // ... with all their parts (also those outside the range), and whether any part may
            // satisfy the hints.
            for h in &heads {
                for (id, c) in cands.iter_mut() {
                    if let Some(t) = h.get(id).filter(|t| !t.spans.is_empty()) {
                        let (svc, name) = hints.spans(&t.spans);
                        c.svc |= svc;
                        c.name |= name;
                        c.head.push(t.spans.clone());
                        c.time(t.start, t.end);
                    }
                }
            }
            drop(head);
            for (ri, (_, r)) in readers.iter().enumerate() {
                let ix = &r.index;
                let rg_hints = row_group_hints(r, &hints);
                // Both sorted by id: a merge join.
                let mut i = 0;
                for (id, c) in cands.iter_mut() {
                    while i < ix.ids.len() && ix.ids[i] < *id {
                        i += 1;
                    }
                    if i == ix.ids.len() {
                        break;
                    }
                    if ix.ids[i] == *id {
                        let g = ix.row_group_of(i);
                        let (svc, name) = rg_hints[g];
                        c.svc |= svc;
                        c.name |= name;
                        c.blocks.push((ri as u32, g as u32, ix.row[i], ix.spans[i]));
                        c.time(ix.start[i], ix.end[i]);
                    }
                }
            }
        }
        cands.retain(|_, c| c.svc && c.name);
        let filter = req.filter.as_ref().and_then(Filter::new);
        let mut members: HashMap<(u32, u32), Vec<Member>> = HashMap::new();
        for (id, c) in &cands {
            let others = c.blocks.len() + c.head.len() > 1;
            for &(r, g, row, n) in &c.blocks {
                members
                    .entry((r, g))
                    .or_default()
                    .push((*id, row, n, others));
            }
        }
        let mut current: Vec<Option<LoadedRowGroup>> = (0..readers.len()).map(|_| None).collect();
        // Per reader: the row group last evaluated by the filter, with its candidates' bits.
        let mut pre: Vec<Option<(u32, HashMap<TraceId, Bits>)>> =
            (0..readers.len()).map(|_| None).collect();
        let mut touched: HashSet<u32> = HashSet::new();
        for (id, c) in cands {
            if let Some(f) = &filter {
                let mut bits = 0;
                for h in &c.head {
                    bits |= f.span_bits(h);
                }
                if f.has_atoms() {
                    for &(ri, g, _, _) in &c.blocks {
                        let p = &mut pre[ri as usize];
                        if p.as_ref().map(|(x, _)| *x) != Some(g) {
                            let (m, r) = &readers[ri as usize];
                            let map = self
                                .filter_row_group(
                                    tenant,
                                    m,
                                    r,
                                    g as usize,
                                    &members[&(ri, g)],
                                    f,
                                    stats,
                                )
                                .await?;
                            *p = Some((g, map));
                        }
                        if let Some((_, map)) = p {
                            bits |= map.get(&id).copied().unwrap_or(0);
                        }
                    }
                }
                let dur = c.times.map_or(0, |(s, e)| e.saturating_sub(s));
                if !f.matches(bits, dur) {
                    stats.traces_pruned += 1;
                    continue;
                }
            }
            let mut spans: Vec<Span> = Vec::new();
            for h in &c.head {
                spans.extend(h.iter().cloned());
            }
            for &(ri, g, _, _) in &c.blocks {
                let cur = &mut current[ri as usize];
                if cur.as_ref().map(|(x, _)| *x) != Some(g) {
                    let (m, r) = &readers[ri as usize];
                    // The rows of the row group's candidates that may still match.
                    let evaluated = match (&filter, &pre[ri as usize]) {
                        (Some(f), Some((pg, map))) if *pg == g && f.has_atoms() => Some((f, map)),
                        _ => None,
                    };
                    let sel: Vec<(u32, u32)> = members[&(ri, g)]
                        .iter()
                        .filter(|(t, _, _, others)| match evaluated {
                            Some((f, map)) => {
                                let mut b = map.get(t).copied().unwrap_or(0);
                                if *others {
                                    b = f.all();
                                }
                                f.matches(b, u64::MAX)
                            }
                            None => true,
                        })
                        .map(|&(_, row, n, _)| (row, n))
                        .collect();
                    let rows = self
                        .read_rows(tenant, m, r, g as usize, &sel, stats)
                        .await?;
                    touched.insert(ri);
                    let mut by_id: HashMap<TraceId, Vec<Span>> = HashMap::new();
                    for s in rows {
                        by_id.entry(s.trace_id).or_default().push(s);
                    }
                    *cur = Some((g, by_id));
                }
                if let Some((_, by_id)) = cur {
                    if let Some(v) = by_id.remove(&id) {
                        spans.extend(v);
                    }
                }
            }
            if spans.is_empty() {
                continue;
            }
            merge_spans(&mut spans);
            let trace = Trace {
                trace_id: id,
                spans,
            };
            stats.traces += 1;
            stats.spans += trace.spans.len() as u64;
            if sink(tenant, &trace).is_break() {
                stats.blocks += touched.len() as u64;
                return Ok(ControlFlow::Break(()));
            }
        }
        stats.blocks += touched.len() as u64;
        Ok(ControlFlow::Continue(()))
    }
}

#[async_trait]
impl TraceWriter for TraceStore {
    async fn push(
        &self,
        tenant: &TenantId,
        spans: Vec<Span>,
        limits: &PushLimits,
    ) -> Result<PushResult, Error> {
        self.push_spans(tenant, spans, limits).await
    }
}

#[async_trait]
impl TraceSource for TraceStore {
    async fn trace_by_id(
        &self,
        tenants: &TenantSet,
        id: TraceId,
        start_ns: u64,
        end_ns: u64,
    ) -> Result<Option<Trace>, Error> {
        let end = norm_end(end_ns);
        let mut spans = Vec::new();
        for t in tenants.tenants() {
            self.trace_parts(t, &id, start_ns, end, &mut spans).await?;
        }
        if spans.is_empty() {
            return Ok(None);
        }
        merge_spans(&mut spans);
        Ok(Some(Trace {
            trace_id: id,
            spans,
        }))
    }

    async fn scan(
        &self,
        req: &TraceScan,
        sink: &mut (dyn for<'a, 'b> FnMut(&'a TenantId, &'b Trace) -> ControlFlow<()> + Send),
    ) -> Result<ScanStats, Error> {
        let mut stats = ScanStats::default();
        if req.start_ns >= norm_end(req.end_ns) {
            return Ok(stats);
        }
        // No tenant set: every tenant this store knows (head or bucket).
        let all: Vec<TenantId> = match &req.tenants {
            Some(ts) => ts.tenants().to_vec(),
            None => {
                let mut v: BTreeSet<TenantId> = self.inner.tenants.read().keys().cloned().collect();
                v.extend(self.inner.block_lists.lock().keys().cloned());
                v.into_iter().collect()
            }
        };
        for t in &all {
            if self.scan_tenant(t, req, sink, &mut stats).await?.is_break() {
                break;
            }
        }
        Ok(stats)
    }
}
