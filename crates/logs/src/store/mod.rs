//! The log store: per-tenant heads rebuilt from a WAL, immutable blocks in the object store,
//! retention — behind one cloneable [`LogStore`] handle that implements [`LogSource`].
//!
//! Write path: `push` validates against each stream's state (Loki 3 unordered writes: an entry
//! older than the stream's newest minus the out-of-order window is rejected, a repeat of the last
//! entry is dropped), writes one WAL record and waits until it is durable, then makes the entries
//! visible in the stream's open chunk. Open chunks are sealed (sorted, zstd) at a target size or
//! age; `maintenance` writes a tenant's sealed head into a block when it is big or old enough,
//! then truncates the WAL. Reads merge, per stream and in time order, the head and the blocks
//! overlapping the range. Formats: `crates/logs/DESIGN.md`.

mod block;
mod codec;
mod head;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::{ControlFlow, Range};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use common::config::StorageConfig;
use common::limits::Overrides;
use common::tenant::TENANT_LABEL;
use common::{Labels, Matcher, TenantId, TenantSet};
use parking_lot::{Mutex, RwLock};
use storage::block::{BlockMeta, BlockStore};
use storage::wal::{Wal, WalOptions};
use ulid::Ulid;

use self::block::{build_block, BlockFetcher, BlockIndex, CHUNKS_FILE, FORMAT_VERSION, INDEX_FILE};
use self::codec::{decode_wal_record, encode_wal_record, Decoder};
pub use self::codec::{go_time_string, rfc3339};
use self::head::{Head, OpenSnapshot, SealedChunk, Stream, Validation};
use crate::model::{Batch, LogSource, ScanRequest, ScanStats, StreamInfo, StreamPush, StreamStats};
use crate::Error;

/// Signal name of log blocks and WAL folders.
pub(crate) const SIGNAL: &str = "logs";
/// Block lists are re-read from the bucket after this long (other nodes may add blocks).
const BLOCK_LIST_TTL: Duration = Duration::from_secs(30);
/// Decoded block indexes kept in memory.
const INDEX_CACHE_BLOCKS: usize = 1024;
/// Blocks without `meta.json` older than this are removed by maintenance.
const PARTIAL_BLOCK_MIN_AGE: Duration = Duration::from_secs(3600);
const WAL_ID_FILE: &str = "wal_id";
/// Compaction keeps a merged block within this time span (ns).
const COMPACT_SPAN_NS: i64 = 24 * 3600 * 1_000_000_000;
/// Blocks superseded by a compacted one are deleted this long after it was written (ns).
const SUPERSEDED_GRACE_NS: i64 = 5 * 60 * 1_000_000_000;

/// Tuning of the head and block cutting.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// An open chunk is sealed once its lines reach this many bytes.
    pub chunk_target_bytes: usize,
    /// An open chunk is sealed by maintenance once its first entry arrived this long ago (ns).
    pub chunk_max_age_ns: i64,
    /// A tenant's head is written into a block once its sealed chunks exceed this many bytes.
    pub block_max_bytes: u64,
    /// ... or once its oldest data arrived this long ago (ns).
    pub block_max_age_ns: i64,
    /// zstd level of chunks sealed in the head (fast: it is on the ingest path).
    pub zstd_level: i32,
    /// zstd level of chunks in blocks. Block cuts run in the background, so chunks are
    /// recompressed harder there: on log text level 11 gives ~35 % smaller chunks than level 3.
    pub block_zstd_level: i32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            chunk_target_bytes: 256 << 10,
            chunk_max_age_ns: 30 * 60 * 1_000_000_000,
            block_max_bytes: 64 << 20,
            block_max_age_ns: 2 * 3600 * 1_000_000_000,
            zstd_level: 3,
            block_zstd_level: 11,
        }
    }
}

/// Per-push limits (from the tenant's limits, resolved by the caller).
#[derive(Clone, Debug, Default)]
pub struct PushOptions {
    /// Streams the tenant may have in the head; 0 = unlimited.
    pub max_streams: usize,
    /// How far behind a stream's newest entry an entry may be (ns).
    pub ooo_window_ns: i64,
}

/// What a push stored and what it rejected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushOutcome {
    /// Entries stored.
    pub accepted_entries: usize,
    /// Line bytes stored.
    pub accepted_bytes: usize,
    /// Entries dropped silently as exact repeats of the stream's last entry (Loki semantics).
    pub duplicates: usize,
    /// Loki's reason per rejected entry (`entry too far behind, entry timestamp is: …, oldest
    /// acceptable timestamp is: …`).
    pub rejected: Vec<String>,
    /// For each of `rejected`: index of the stream in the request and the entry's timestamp (ns),
    /// to build Loki's `entry with timestamp … ignored, reason: '…'` lines.
    pub rejected_at: Vec<(usize, i64)>,
}

/// Per-tenant figures for `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantLogStats {
    /// Streams in the head.
    pub streams: u64,
    /// Entries in the head.
    pub head_entries: u64,
    /// Line bytes in the head (uncompressed).
    pub head_bytes: u64,
    /// Bytes of the head's sealed chunks (compressed) plus its open chunks' lines.
    pub head_memory_bytes: u64,
    /// Bytes of WAL segments on disk.
    pub wal_bytes: u64,
    /// Blocks in the object store (as last listed).
    pub blocks: u64,
    /// Bytes of those blocks (index + chunks).
    pub block_bytes: u64,
    /// Entries in those blocks.
    pub block_entries: u64,
}

/// Figures of the whole store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogStoreStats {
    /// Per tenant (also tenants that only have blocks), sorted.
    pub tenants: BTreeMap<TenantId, TenantLogStats>,
}

/// A tenant's live state on this node.
struct TenantDb {
    head: Head,
    wal: Wal,
    /// Names this WAL in block metas, so that replay skips segments already in a block.
    wal_id: String,
    /// Pushes and scan planning hold it shared; a block cut holds it exclusively to move chunks
    /// between head and block atomically for readers.
    gate: Arc<tokio::sync::RwLock<()>>,
    /// One cut per tenant at a time.
    maint: tokio::sync::Mutex<()>,
    /// Compressed bytes of sealed chunks not yet in a block.
    sealed_bytes: AtomicU64,
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
    indexes: Mutex<HashMap<Ulid, Arc<BlockIndex>>>,
    closed: AtomicBool,
    maintenance: tokio::sync::Mutex<()>,
    create: tokio::sync::Mutex<()>,
}

/// The log store of all tenants. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
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

/// Matchers on `__tenant_id__` select tenants and are removed; `None` when they exclude `tenant`.
fn tenant_matchers(tenant: &TenantId, matchers: &[Matcher]) -> Option<Vec<Matcher>> {
    let mut out = Vec::with_capacity(matchers.len());
    for m in matchers {
        if m.name == TENANT_LABEL {
            if !m.matches(tenant.as_str()) {
                return None;
            }
        } else {
            out.push(m.clone());
        }
    }
    Some(out)
}

fn overlaps(meta: &BlockMeta, start: i64, end: i64) -> bool {
    meta.min_time < end && meta.max_time >= start
}

/// One source of a stream's entries in a scan.
enum Src {
    Block {
        fetcher: usize,
        range: Range<u64>,
        min: i64,
        max: i64,
    },
    Mem(Arc<SealedChunk>),
    Open(OpenSnapshot),
}

impl Src {
    fn min(&self) -> i64 {
        match self {
            Src::Block { min, .. } => *min,
            Src::Mem(c) => c.min_ts,
            Src::Open(o) => o.min,
        }
    }
    fn max(&self) -> i64 {
        match self {
            Src::Block { max, .. } => *max,
            Src::Mem(c) => c.max_ts,
            Src::Open(o) => o.max,
        }
    }
}

struct StreamPlan {
    info: StreamInfo,
    srcs: Vec<Src>,
}

/// Totals per stream for `streams()`.
struct StreamTotals {
    info: StreamInfo,
    entries: u64,
    bytes: u64,
    chunks: u64,
}

/// Appends entries of sorted batches `parts` to `out` in time order (ties: earlier part first).
pub(crate) fn merge_into(parts: &[Batch], out: &mut Batch) {
    let mut pos = vec![0usize; parts.len()];
    loop {
        let mut best: Option<usize> = None;
        for (k, p) in parts.iter().enumerate() {
            if pos[k] < p.len() && best.is_none_or(|b| p.ts[pos[k]] < parts[b].ts[pos[b]]) {
                best = Some(k);
            }
        }
        let Some(k) = best else { break };
        let i = pos[k];
        let p = &parts[k];
        out.push(p.ts[i], p.line(i), p.metadata(i).iter());
        pos[k] += 1;
    }
}

impl LogStore {
    /// Opens the store with default [`StoreOptions`]: replays the WAL of every tenant found under
    /// `<data_dir>/<tenant>/logs/wal` and lists the blocks of every tenant in the bucket, so a node
    /// with an empty data dir serves what the bucket holds.
    pub async fn open(
        cfg: &StorageConfig,
        overrides: Overrides,
        blocks: BlockStore,
    ) -> Result<Self, Error> {
        Self::open_with(cfg, overrides, blocks, StoreOptions::default()).await
    }

    /// [`LogStore::open`] with explicit options.
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
                indexes: Mutex::new(HashMap::new()),
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
        let head = Head::default();
        let opts = &self.inner.opts;
        let started = Instant::now();
        let (mut records, mut bad, mut sealed) = (0u64, 0u64, 0u64);
        let now = now_ns();
        let wal = Wal::open(&dir.join("wal"), self.inner.wal_opts.clone(), |seg, rec| {
            if seg < skip_before {
                return Ok(());
            }
            records += 1;
            match decode_wal_record(rec) {
                Ok(pushes) => sealed += replay(&head, tenant, pushes, now, opts),
                // A CRC-valid record we cannot parse is a bug or a newer format: keep serving the
                // rest rather than refusing to start.
                Err(e) => {
                    bad += 1;
                    tracing::error!(tenant = %tenant, error = %e, "skipping undecodable logs wal record");
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
            streams = head.stream_count(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "logs wal replayed"
        );
        let db = Arc::new(TenantDb {
            head,
            wal,
            wal_id,
            gate: Arc::new(tokio::sync::RwLock::new(())),
            maint: tokio::sync::Mutex::new(()),
            sealed_bytes: AtomicU64::new(sealed),
            head_since: AtomicI64::new(if records > 0 { now } else { i64::MAX }),
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
                context: "log store".into(),
                source: std::io::Error::other("the log store is closed"),
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

    /// Validates and durably stores a push. Per stream, an entry older than the stream's newest
    /// entry minus `opts.ooo_window_ns` is rejected (listed in the outcome; the rest is stored) and
    /// an exact repeat of the stream's last entry is dropped. A push that would create streams
    /// beyond `opts.max_streams` is refused whole with `Error::Limit` (429) before anything is
    /// written. Returns once the accepted entries are durable in the WAL; they become visible to
    /// reads only then.
    pub async fn push(
        &self,
        tenant: &TenantId,
        mut streams: Vec<StreamPush>,
        opts: &PushOptions,
    ) -> Result<PushOutcome, Error> {
        // Streams without entries create nothing (as Loki's distributor drops them); `orig` maps
        // back to request positions for `rejected_at`.
        let mut orig: Vec<usize> = Vec::new();
        if streams.iter().any(|s| s.entries.is_empty()) {
            let mut kept = Vec::with_capacity(streams.len());
            for (i, s) in streams.into_iter().enumerate() {
                if !s.entries.is_empty() {
                    orig.push(i);
                    kept.push(s);
                }
            }
            streams = kept;
        }
        if streams.is_empty() {
            return Ok(PushOutcome::default());
        }
        let db = self.db_for_write(tenant).await?;
        let gate = db.gate.clone().read_owned().await;
        self.check_open()?;
        let handles = db.head.resolve(tenant, &streams, opts.max_streams)?;
        let mut out = PushOutcome::default();
        let mut accepted: Vec<Vec<u32>> = Vec::with_capacity(streams.len());
        let mut undo: Vec<Validation> = Vec::with_capacity(streams.len());
        for (k, (sp, h)) in streams.iter().zip(&handles).enumerate() {
            let mut acc = Vec::with_capacity(sp.entries.len());
            let mut st = h.state.lock();
            undo.push(st.validation());
            for (i, e) in sp.entries.iter().enumerate() {
                if st.is_duplicate(e) {
                    out.duplicates += 1;
                    continue;
                }
                if st.highest_ts != i64::MIN {
                    let cutoff = st.highest_ts.saturating_sub(opts.ooo_window_ns.max(0));
                    if e.ts < cutoff {
                        out.rejected.push(format!(
                            "entry too far behind, entry timestamp is: {}, oldest acceptable timestamp is: {}",
                            rfc3339(e.ts),
                            rfc3339(cutoff)
                        ));
                        out.rejected_at
                            .push((orig.get(k).copied().unwrap_or(k), e.ts));
                        continue;
                    }
                }
                st.note_accepted(e);
                acc.push(i as u32);
                out.accepted_entries += 1;
                out.accepted_bytes += e.line.len();
            }
            accepted.push(acc);
        }
        if out.accepted_entries == 0 {
            return Ok(out);
        }
        let rec = encode_wal_record(&streams, &accepted);
        // The WAL write and the apply run in a task of their own: when the caller goes away (a
        // client disconnect drops the handler), a record that may already be durable must still
        // become visible, or the next cut would truncate it away without it being in a block.
        let (store, db2) = (self.clone(), db.clone());
        let total = tokio::spawn(async move {
            let _gate = gate;
            if let Err(e) = db2.wal.append(rec).await {
                // Nothing was stored: forget the entries, or a retry would find its last entry
                // "duplicate" (or too far behind).
                for (h, v) in handles.iter().zip(undo).rev() {
                    h.state.lock().restore(v);
                }
                return Err(Error::from(e));
            }
            let now = now_ns();
            let sealed = apply(&handles, streams, &accepted, now, &store.inner.opts);
            db2.head_since.fetch_min(now, Ordering::AcqRel);
            Ok(db2.sealed_bytes.fetch_add(sealed, Ordering::AcqRel) + sealed)
        })
        .await
        .map_err(|e| io_err("log push task".into(), std::io::Error::other(e)))??;
        if total >= self.inner.opts.block_max_bytes && !db.cutting.swap(true, Ordering::AcqRel) {
            // Size-triggered cut in the background; the periodic maintenance catches anything else.
            let store = self.clone();
            let tenant = tenant.clone();
            tokio::spawn(async move {
                if let Some(db) = store.tenant_db(&tenant) {
                    if db.sealed_bytes.load(Ordering::Acquire) >= store.inner.opts.block_max_bytes {
                        if let Err(e) = store.cut(&tenant, db.clone()).await {
                            tracing::warn!(tenant = %tenant, error = %e, "logs block cut failed");
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
                tracing::warn!(tenant = %tenant, block = %m.ulid, version = m.version, "skipping log block of unknown format version");
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
        // A compacted block supersedes its sources at once; they are deleted a little later, so
        // that scans planned before the compaction can still read them.
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

    /// Adds a block this node wrote to the tenant's list (hiding the blocks it supersedes).
    fn add_block(&self, tenant: &TenantId, meta: BlockMeta) {
        let mut lists = self.inner.block_lists.lock();
        let l = lists.entry(tenant.clone()).or_default();
        l.own.insert(meta.ulid);
        for s in &meta.sources {
            l.own.remove(s);
        }
        let mut v: Vec<BlockMeta> = l
            .metas
            .iter()
            .filter(|m| !meta.sources.contains(&m.ulid))
            .cloned()
            .collect();
        v.push(meta);
        v.sort_by_key(|m| (m.min_time, m.ulid));
        l.metas = Arc::new(v);
    }

    async fn block_index(
        &self,
        tenant: &TenantId,
        meta: &BlockMeta,
    ) -> Result<Arc<BlockIndex>, Error> {
        if let Some(ix) = self.inner.indexes.lock().get(&meta.ulid) {
            return Ok(ix.clone());
        }
        let bytes = self
            .inner
            .blocks
            .get(tenant, SIGNAL, meta.ulid, INDEX_FILE)
            .await?;
        let ix = Arc::new(BlockIndex::decode(&bytes)?);
        let mut cache = self.inner.indexes.lock();
        if cache.len() >= INDEX_CACHE_BLOCKS {
            // Bounded, not an LRU: drop an arbitrary entry.
            if let Some(k) = cache.keys().next().copied() {
                cache.remove(&k);
            }
        }
        cache.insert(meta.ulid, ix.clone());
        Ok(ix)
    }

    /// Blocks of `tenant` overlapping `[start, end)` with their indexes (blocks deleted since the
    /// listing are skipped).
    async fn overlapping_blocks(
        &self,
        tenant: &TenantId,
        start: i64,
        end: i64,
    ) -> Result<Vec<(BlockMeta, Arc<BlockIndex>)>, Error> {
        let mut out = Vec::new();
        for meta in self
            .block_list(tenant, false)
            .await?
            .iter()
            .filter(|m| overlaps(m, start, end))
        {
            match self.block_index(tenant, meta).await {
                Ok(ix) => out.push((meta.clone(), ix)),
                Err(Error::Storage(e)) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Writes everything in the tenant's head into one block, then truncates the WAL; one cut per
    /// tenant at a time (`db.maint`). Runs in a task of its own: abandoned halfway (shutdown
    /// dropping the maintenance future), it would leave uploaded chunks in `flushing`, to be
    /// uploaded again.
    async fn cut(&self, tenant: &TenantId, db: Arc<TenantDb>) -> Result<(), Error> {
        let (store, tenant) = (self.clone(), tenant.clone());
        tokio::spawn(async move {
            let _m = db.maint.lock().await;
            store.cut_now(&tenant, &db).await
        })
        .await
        .map_err(|e| io_err("log block cut task".into(), std::io::Error::other(e)))?
    }

    async fn cut_now(&self, tenant: &TenantId, db: &TenantDb) -> Result<(), Error> {
        let level = self.inner.opts.zstd_level;
        let seg;
        let since;
        let mut parts: Vec<(Arc<Labels>, Vec<Arc<SealedChunk>>)> = Vec::new();
        {
            let _g = db.gate.write().await;
            db.head.remove_empty();
            // Everything acknowledged so far is in segments below `seg`, and in the head.
            seg = db.wal.cut_segment()?;
            for s in db.head.streams() {
                let mut st = s.state.lock();
                if let Err(e) = st.seal(level) {
                    tracing::warn!(tenant = %tenant, error = %e, "sealing log chunk failed");
                }
                let moved = std::mem::take(&mut st.sealed);
                st.flushing.extend(moved);
                if !st.flushing.is_empty() {
                    parts.push((s.info.labels.clone(), st.flushing.clone()));
                }
            }
            db.sealed_bytes.store(0, Ordering::Release);
            since = db.head_since.swap(i64::MAX, Ordering::AcqRel);
        }
        if parts.is_empty() {
            db.wal.truncate_before(seg)?;
            return Ok(());
        }
        let flushing_bytes: u64 = parts
            .iter()
            .flat_map(|(_, c)| c.iter().map(|c| c.data.len() as u64))
            .sum();
        let result = self.write_cut(tenant, db, parts, seg).await;
        if result.is_err() {
            // The chunks stay in `flushing` and the WAL is untouched; keep the triggers armed so
            // that the next maintenance retries even if no more data arrives.
            db.sealed_bytes.fetch_add(flushing_bytes, Ordering::AcqRel);
            db.head_since.fetch_min(since, Ordering::AcqRel);
        }
        result
    }

    async fn write_cut(
        &self,
        tenant: &TenantId,
        db: &TenantDb,
        mut parts: Vec<(Arc<Labels>, Vec<Arc<SealedChunk>>)>,
        seg: u64,
    ) -> Result<(), Error> {
        let level = self.inner.opts.block_zstd_level;
        let recompress = level != self.inner.opts.zstd_level;
        parts.sort_by(|a, b| a.0.cmp(&b.0));
        let target = self.inner.opts.chunk_target_bytes;
        let (index, chunks, c) =
            tokio::task::spawn_blocking(move || build_block(&parts, target, level, recompress))
                .await
                .map_err(|e| io_err("build log block".into(), std::io::Error::other(e)))??;
        let stats = serde_json::json!({
            "streams": c.streams,
            "chunks": c.chunks,
            "entries": c.entries,
            "raw_bytes": c.raw_bytes,
            "index_bytes": index.len(),
            "chunks_bytes": chunks.len(),
            "bytes": index.len() + chunks.len(),
            "wal_id": db.wal_id,
            "wal_segment": seg,
        });
        let meta = BlockMeta {
            ulid: Ulid::new(),
            signal: SIGNAL.to_string(),
            version: FORMAT_VERSION,
            min_time: c.min_ts,
            max_time: c.max_ts,
            level: 1,
            sources: Vec::new(),
            stats,
        };
        self.inner
            .blocks
            .put_block(
                tenant,
                &meta,
                vec![
                    (INDEX_FILE.to_string(), Bytes::from(index)),
                    (CHUNKS_FILE.to_string(), Bytes::from(chunks)),
                ],
            )
            .await?;
        tracing::info!(
            tenant = %tenant, block = %meta.ulid, streams = c.streams, entries = c.entries,
            raw_bytes = c.raw_bytes, bytes = stat(&meta, "bytes"), "log block written"
        );
        {
            let _g = db.gate.write().await;
            for s in db.head.streams() {
                s.state.lock().flushing.clear();
            }
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
        self.inner.indexes.lock().remove(&m.ulid);
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

    /// Seals open chunks older than the chunk age, writes heads that are big or old enough into
    /// blocks (truncating the WAL), deletes blocks past the tenant's `retention_period` and
    /// leftovers of failed uploads. Called periodically by the server with the wall clock.
    pub async fn maintenance(&self, now_ns: i64) -> Result<(), Error> {
        let _m = self.inner.maintenance.lock().await;
        let mut tenants: BTreeSet<TenantId> = self.inner.tenants.read().keys().cloned().collect();
        tenants.extend(self.inner.blocks.list_tenants(SIGNAL).await?);
        let mut first_err = None;
        for t in tenants {
            if let Err(e) = self.maintain_tenant(&t, now_ns, false).await {
                tracing::warn!(tenant = %t, error = %e, "logs maintenance failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    async fn maintain_tenant(&self, tenant: &TenantId, now: i64, force: bool) -> Result<(), Error> {
        let opts = &self.inner.opts;
        if let Some(db) = self.tenant_db(tenant) {
            if !force {
                let _g = db.gate.read().await;
                let mut sealed = 0;
                for s in db.head.streams() {
                    let mut st = s.state.lock();
                    if !st.open.is_empty()
                        && now.saturating_sub(st.open_since) >= opts.chunk_max_age_ns
                    {
                        match st.seal(opts.zstd_level) {
                            Ok(n) => sealed += n,
                            Err(e) => {
                                tracing::warn!(tenant = %tenant, error = %e, "sealing log chunk failed")
                            }
                        }
                    }
                }
                db.sealed_bytes.fetch_add(sealed, Ordering::AcqRel);
            }
            let since = db.head_since.load(Ordering::Acquire);
            let due = force
                || db.sealed_bytes.load(Ordering::Acquire) >= opts.block_max_bytes
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
                    tracing::info!(tenant = %tenant, block = %m.ulid, "deleting log block past retention");
                    self.delete_block(tenant, m).await?;
                }
            }
            // After retention, so that expired blocks are not merged into live ones first.
            self.compact(tenant, now).await?;
            if let Err(e) = self
                .inner
                .blocks
                .gc_partial(tenant, SIGNAL, PARTIAL_BLOCK_MIN_AGE)
                .await
            {
                tracing::warn!(tenant = %tenant, error = %e, "removing partial log blocks failed");
            }
        }
        Ok(())
    }

    /// Merges runs of adjacent small blocks (each under half `block_max_bytes`, together at most
    /// `block_max_bytes` and [`COMPACT_SPAN_NS`]) into one block per run, and deletes blocks that
    /// a compacted block superseded more than [`SUPERSEDED_GRACE_NS`] ago.
    async fn compact(&self, tenant: &TenantId, now: i64) -> Result<(), Error> {
        let max = self.inner.opts.block_max_bytes;
        let metas = self.block_list(tenant, true).await?;
        let mut groups: Vec<Vec<BlockMeta>> = Vec::new();
        let mut cur: Vec<BlockMeta> = Vec::new();
        let mut cur_bytes = 0u64;
        for m in metas.iter() {
            let bytes = stat(m, "bytes");
            let small = bytes < max / 2;
            let fits = small
                && cur_bytes + bytes <= max
                && cur.first().is_none_or(|f| {
                    m.max_time
                        .max(cur.iter().map(|c| c.max_time).max().unwrap_or(i64::MIN))
                        - f.min_time
                        <= COMPACT_SPAN_NS
                });
            if !fits {
                if cur.len() >= 2 {
                    groups.push(std::mem::take(&mut cur));
                }
                cur.clear();
                cur_bytes = 0;
            }
            if small {
                cur_bytes += bytes;
                cur.push(m.clone());
            }
        }
        if cur.len() >= 2 {
            groups.push(cur);
        }
        for g in groups {
            self.compact_group(tenant, &g).await?;
        }
        // Superseded blocks: delete once their successor is old enough that no scan still plans
        // with them (the block list TTL bounds that on other nodes).
        let listed = self.inner.blocks.list_blocks(tenant, SIGNAL).await?;
        let now_ms = now / 1_000_000;
        let grace_ms = SUPERSEDED_GRACE_NS / 1_000_000;
        let mut old_sources: HashSet<Ulid> = HashSet::new();
        for m in &listed {
            if (m.ulid.timestamp_ms() as i64) <= now_ms - grace_ms {
                old_sources.extend(m.sources.iter().copied());
            }
        }
        for m in listed.iter().filter(|m| old_sources.contains(&m.ulid)) {
            tracing::info!(tenant = %tenant, block = %m.ulid, "deleting compacted log block");
            self.delete_block(tenant, m).await?;
        }
        Ok(())
    }

    async fn compact_group(&self, tenant: &TenantId, group: &[BlockMeta]) -> Result<(), Error> {
        let mut streams: BTreeMap<Arc<Labels>, Vec<Arc<SealedChunk>>> = BTreeMap::new();
        for m in group {
            let ix = self.block_index(tenant, m).await?;
            let data = self
                .inner
                .blocks
                .get(tenant, SIGNAL, m.ulid, CHUNKS_FILE)
                .await?;
            for s in &ix.streams {
                let chunks = streams.entry(s.labels.clone()).or_default();
                for c in &s.chunks {
                    let r = c.offset as usize..(c.offset + c.len) as usize;
                    if r.end > data.len() {
                        return Err(Error::Corrupt(format!(
                            "log block {} chunks file is shorter than its index",
                            m.ulid
                        )));
                    }
                    chunks.push(Arc::new(SealedChunk {
                        data: data.slice(r),
                        min_ts: c.min_ts,
                        max_ts: c.max_ts,
                        entries: c.entries,
                        raw_bytes: c.raw_bytes,
                    }));
                }
            }
        }
        let parts: Vec<(Arc<Labels>, Vec<Arc<SealedChunk>>)> = streams.into_iter().collect();
        // Compaction merges chunks already compressed at the block level.
        let (target, level) = (
            self.inner.opts.chunk_target_bytes,
            self.inner.opts.block_zstd_level,
        );
        let (index, chunks, c) =
            tokio::task::spawn_blocking(move || build_block(&parts, target, level, false))
                .await
                .map_err(|e| io_err("build log block".into(), std::io::Error::other(e)))??;
        let mut sources = Vec::new();
        for m in group {
            sources.push(m.ulid);
            sources.extend(m.sources.iter().copied());
        }
        // Keep what WAL replay needs to skip segments already in blocks (see `open_tenant`).
        let mut wal: BTreeMap<String, u64> = BTreeMap::new();
        for m in group {
            if let Some(id) = m.stats.get("wal_id").and_then(|v| v.as_str()) {
                let seg = wal.entry(id.to_string()).or_default();
                *seg = (*seg).max(stat(m, "wal_segment"));
            }
        }
        let meta = BlockMeta {
            ulid: Ulid::new(),
            signal: SIGNAL.to_string(),
            version: FORMAT_VERSION,
            min_time: c.min_ts,
            max_time: c.max_ts,
            level: group.iter().map(|m| m.level).max().unwrap_or(1) + 1,
            sources,
            stats: serde_json::json!({
                "streams": c.streams,
                "chunks": c.chunks,
                "entries": c.entries,
                "raw_bytes": c.raw_bytes,
                "index_bytes": index.len(),
                "chunks_bytes": chunks.len(),
                "bytes": index.len() + chunks.len(),
            }),
        };
        let mut meta = meta;
        // One WAL id per block (blocks of one tenant come from one node's WAL in practice); with
        // several, the newest segment of the first is kept.
        if let Some((id, seg)) = wal.into_iter().next() {
            meta.stats["wal_id"] = serde_json::Value::from(id);
            meta.stats["wal_segment"] = serde_json::Value::from(seg);
        }
        self.inner
            .blocks
            .put_block(
                tenant,
                &meta,
                vec![
                    (INDEX_FILE.to_string(), Bytes::from(index)),
                    (CHUNKS_FILE.to_string(), Bytes::from(chunks)),
                ],
            )
            .await?;
        tracing::info!(tenant = %tenant, block = %meta.ulid, sources = group.len(), entries = c.entries, "log blocks compacted");
        self.add_block(tenant, meta);
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
    pub fn stats(&self) -> LogStoreStats {
        let mut map: BTreeMap<TenantId, TenantLogStats> = BTreeMap::new();
        for (t, db) in self.inner.tenants.read().iter() {
            let s = map.entry(t.clone()).or_default();
            s.streams = db.head.stream_count() as u64;
            for st in db.head.streams() {
                let st = st.state.lock();
                s.head_entries += st.open.len() as u64;
                s.head_bytes += st.open.lines.len() as u64;
                s.head_memory_bytes += st.open.lines.len() as u64;
                for c in st.sealed.iter().chain(&st.flushing) {
                    s.head_entries += u64::from(c.entries);
                    s.head_bytes += c.raw_bytes;
                    s.head_memory_bytes += c.data.len() as u64;
                }
            }
            s.wal_bytes = db.wal.disk_size();
        }
        for (t, l) in self.inner.block_lists.lock().iter() {
            let s = map.entry(t.clone()).or_default();
            s.blocks = l.metas.len() as u64;
            s.block_bytes = l.metas.iter().map(|m| stat(m, "bytes")).sum();
            s.block_entries = l.metas.iter().map(|m| stat(m, "entries")).sum();
        }
        LogStoreStats { tenants: map }
    }

    // --------------------------------------------------------------------------------------------
    // Reads

    /// Plans one tenant's scan: per matching stream (in label order) its sources overlapping
    /// `[start, end)`, and the fetchers of the blocks involved. The head is snapshotted under the
    /// gate, so that a concurrent cut shows each chunk exactly once.
    async fn plan(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<(Vec<StreamPlan>, Vec<BlockFetcher>), Error> {
        // Warm the block list and index caches before taking the gate, so that the gate (which a
        // pending cut makes pushes wait for) is held for in-memory work only in the common case.
        self.overlapping_blocks(tenant, start, end).await?;
        let db = self.tenant_db(tenant);
        let _g = match &db {
            Some(db) => Some(db.gate.read().await),
            None => None,
        };
        let mut plans: BTreeMap<Arc<Labels>, StreamPlan> = BTreeMap::new();
        let mut fetchers = Vec::new();
        for (meta, ix) in self.overlapping_blocks(tenant, start, end).await? {
            let f = fetchers.len();
            let mut needed = Vec::new();
            for s in &ix.streams {
                if !Matcher::all_match(matchers, &s.labels) {
                    continue;
                }
                let mut srcs = Vec::new();
                for c in &s.chunks {
                    if c.max_ts >= start && c.min_ts < end {
                        needed.push(c.offset..c.offset + c.len);
                        srcs.push(Src::Block {
                            fetcher: f,
                            range: c.offset..c.offset + c.len,
                            min: c.min_ts,
                            max: c.max_ts,
                        });
                    }
                }
                if srcs.is_empty() {
                    continue;
                }
                plans
                    .entry(s.labels.clone())
                    .or_insert_with(|| StreamPlan {
                        info: StreamInfo {
                            tenant: tenant.clone(),
                            labels: s.labels.clone(),
                            fingerprint: s.fingerprint,
                        },
                        srcs: Vec::new(),
                    })
                    .srcs
                    .extend(srcs);
            }
            if !needed.is_empty() {
                fetchers.push(BlockFetcher::new(tenant.clone(), meta, needed));
            }
        }
        if let Some(db) = &db {
            for s in db.head.streams() {
                if !Matcher::all_match(matchers, &s.info.labels) {
                    continue;
                }
                let mut srcs = Vec::new();
                {
                    let st = s.state.lock();
                    for c in st.flushing.iter().chain(&st.sealed) {
                        if c.max_ts >= start && c.min_ts < end {
                            srcs.push(Src::Mem(c.clone()));
                        }
                    }
                    if let Some(o) = st.open_snapshot(start, end) {
                        srcs.push(Src::Open(o));
                    }
                }
                if srcs.is_empty() {
                    continue;
                }
                plans
                    .entry(s.info.labels.clone())
                    .or_insert_with(|| StreamPlan {
                        info: s.info.clone(),
                        srcs: Vec::new(),
                    })
                    .srcs
                    .extend(srcs);
            }
        }
        Ok((plans.into_values().collect(), fetchers))
    }

    async fn decode_src(
        &self,
        src: &Src,
        fetchers: &mut [BlockFetcher],
        dec: &mut Decoder,
        start: i64,
        end: i64,
        out: &mut Batch,
    ) -> Result<(), Error> {
        match src {
            Src::Block { fetcher, range, .. } => {
                let f = &mut fetchers[*fetcher];
                let bytes = match f.get(&self.inner.blocks, range.clone()).await {
                    Ok(b) => b,
                    // Deleted (retention) since the scan was planned.
                    Err(Error::Storage(e)) if e.is_not_found() => return Ok(()),
                    Err(e) => return Err(e),
                };
                dec.decode_into(&bytes, start, end, out)?;
            }
            Src::Mem(c) => {
                dec.decode_into(&c.data, start, end, out)?;
            }
            Src::Open(o) => o.range_into(start, end, out),
        }
        Ok(())
    }

    async fn scan_tenant(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        req: &ScanRequest,
        sink: &mut (dyn for<'a, 'b> FnMut(&'a StreamInfo, &'b Batch) -> ControlFlow<()> + Send),
        stats: &mut ScanStats,
    ) -> Result<ControlFlow<()>, Error> {
        let (start, end) = (req.start, req.end);
        let (mut plans, mut fetchers) = self.plan(tenant, matchers, start, end).await?;
        let mut dec = Decoder::new()?;
        let mut batch = Batch::default();
        let mut parts: Vec<Batch> = Vec::new();
        for plan in &mut plans {
            plan.srcs.sort_by_key(|s| (s.min(), s.max()));
            let srcs = &plan.srcs;
            let mut i = 0;
            while i < srcs.len() {
                // Sources overlapping in time are merged; the others are emitted one by one.
                let mut j = i + 1;
                let mut gmax = srcs[i].max();
                while j < srcs.len() && srcs[j].min() <= gmax {
                    gmax = gmax.max(srcs[j].max());
                    j += 1;
                }
                let emitted: &Batch = if j == i + 1 {
                    match &srcs[i] {
                        Src::Open(o) if o.whole(start, end) => &o.batch,
                        s => {
                            batch.clear();
                            self.decode_src(s, &mut fetchers, &mut dec, start, end, &mut batch)
                                .await?;
                            if !matches!(s, Src::Open(_)) {
                                stats.chunks += 1;
                            }
                            &batch
                        }
                    }
                } else {
                    if parts.len() < j - i {
                        parts.resize_with(j - i, Batch::default);
                    }
                    for (k, s) in srcs[i..j].iter().enumerate() {
                        parts[k].clear();
                        self.decode_src(s, &mut fetchers, &mut dec, start, end, &mut parts[k])
                            .await?;
                        if !matches!(s, Src::Open(_)) {
                            stats.chunks += 1;
                        }
                    }
                    batch.clear();
                    merge_into(&parts[..j - i], &mut batch);
                    &batch
                };
                if !emitted.is_empty() {
                    stats.entries += emitted.len() as u64;
                    stats.bytes += emitted.lines.len() as u64;
                    if sink(&plan.info, emitted).is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                }
                i = j;
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    async fn streams_tenant(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        out: &mut Vec<StreamStats>,
    ) -> Result<(), Error> {
        let mut totals: BTreeMap<Arc<Labels>, StreamTotals> = BTreeMap::new();
        // Warm the block list and index caches before taking the gate, so that the gate (which a
        // pending cut makes pushes wait for) is held for in-memory work only in the common case.
        self.overlapping_blocks(tenant, start, end).await?;
        let db = self.tenant_db(tenant);
        let _g = match &db {
            Some(db) => Some(db.gate.read().await),
            None => None,
        };
        for (_, ix) in self.overlapping_blocks(tenant, start, end).await? {
            for s in &ix.streams {
                if !Matcher::all_match(matchers, &s.labels) {
                    continue;
                }
                for c in &s.chunks {
                    if c.max_ts >= start && c.min_ts < end {
                        let t = totals
                            .entry(s.labels.clone())
                            .or_insert_with(|| StreamTotals {
                                info: StreamInfo {
                                    tenant: tenant.clone(),
                                    labels: s.labels.clone(),
                                    fingerprint: s.fingerprint,
                                },
                                entries: 0,
                                bytes: 0,
                                chunks: 0,
                            });
                        t.entries += u64::from(c.entries);
                        t.bytes += c.raw_bytes;
                        t.chunks += 1;
                    }
                }
            }
        }
        if let Some(db) = &db {
            for s in db.head.streams() {
                if !Matcher::all_match(matchers, &s.info.labels) {
                    continue;
                }
                let st = s.state.lock();
                let mut add = |entries: u64, bytes: u64| {
                    let t = totals
                        .entry(s.info.labels.clone())
                        .or_insert_with(|| StreamTotals {
                            info: s.info.clone(),
                            entries: 0,
                            bytes: 0,
                            chunks: 0,
                        });
                    t.entries += entries;
                    t.bytes += bytes;
                    t.chunks += 1;
                };
                for c in st.flushing.iter().chain(&st.sealed) {
                    if c.max_ts >= start && c.min_ts < end {
                        add(u64::from(c.entries), c.raw_bytes);
                    }
                }
                if !st.open.is_empty() && st.open_max >= start && st.open_min < end {
                    add(st.open.len() as u64, st.open.lines.len() as u64);
                }
            }
        }
        out.extend(totals.into_values().map(|t| StreamStats {
            info: t.info,
            entries: t.entries,
            bytes: t.bytes,
            chunks: t.chunks,
        }));
        Ok(())
    }
}

/// Applies validated entries (`accepted[k]` of `streams[k]`) to their streams' open chunks,
/// sealing full ones; returns the compressed bytes sealed.
fn apply(
    handles: &[Arc<Stream>],
    streams: Vec<StreamPush>,
    accepted: &[Vec<u32>],
    now: i64,
    opts: &StoreOptions,
) -> u64 {
    let mut sealed = 0;
    for ((sp, h), acc) in streams.into_iter().zip(handles).zip(accepted) {
        if acc.is_empty() {
            continue;
        }
        let mut st = h.state.lock();
        let mut next = 0;
        for (i, e) in sp.entries.into_iter().enumerate() {
            if acc.get(next) != Some(&(i as u32)) {
                continue;
            }
            next += 1;
            st.append(e, now);
            if st.open_bytes() >= opts.chunk_target_bytes {
                match st.seal(opts.zstd_level) {
                    Ok(n) => sealed += n,
                    Err(e) => tracing::warn!(error = %e, "sealing log chunk failed"),
                }
            }
        }
    }
    sealed
}

/// Replays one WAL record into the head (duplicates of the last entry are dropped as on push; the
/// out-of-order window is not re-checked); returns the compressed bytes sealed.
fn replay(
    head: &Head,
    tenant: &TenantId,
    pushes: Vec<StreamPush>,
    now: i64,
    opts: &StoreOptions,
) -> u64 {
    let handles = match head.resolve(tenant, &pushes, 0) {
        Ok(h) => h,
        Err(_) => return 0,
    };
    let mut accepted = Vec::with_capacity(pushes.len());
    for (sp, h) in pushes.iter().zip(&handles) {
        let mut st = h.state.lock();
        let mut acc = Vec::with_capacity(sp.entries.len());
        for (i, e) in sp.entries.iter().enumerate() {
            if st.is_duplicate(e) {
                continue;
            }
            st.note_accepted(e);
            acc.push(i as u32);
        }
        accepted.push(acc);
    }
    apply(&handles, pushes, &accepted, now, opts)
}

#[async_trait]
impl LogSource for LogStore {
    async fn scan(
        &self,
        req: &ScanRequest,
        sink: &mut (dyn for<'a, 'b> FnMut(&'a StreamInfo, &'b Batch) -> ControlFlow<()> + Send),
    ) -> Result<ScanStats, Error> {
        let mut stats = ScanStats::default();
        if req.start >= req.end {
            return Ok(stats);
        }
        // `required` substrings are not used for pruning yet (no per-chunk prefilter): the engine
        // filters every line, so skipping nothing is always correct.
        for t in req.tenants.tenants() {
            let Some(ms) = tenant_matchers(t, &req.matchers) else {
                continue;
            };
            if self
                .scan_tenant(t, &ms, req, sink, &mut stats)
                .await?
                .is_break()
            {
                break;
            }
        }
        Ok(stats)
    }

    async fn streams(
        &self,
        tenants: &TenantSet,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<StreamStats>, Error> {
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        for t in tenants.tenants() {
            let Some(ms) = tenant_matchers(t, matchers) else {
                continue;
            };
            self.streams_tenant(t, &ms, start, end, &mut out).await?;
        }
        Ok(out)
    }
}
