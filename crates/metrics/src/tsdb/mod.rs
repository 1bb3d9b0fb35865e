//! The metrics TSDB: per-tenant heads rebuilt from a WAL, immutable blocks in the object store,
//! compaction and retention — behind one cloneable [`MetricsStore`] handle.
//!
//! Data path: `write` validates against the tenant's head (ordering, duplicates, limits), applies the
//! accepted samples and waits until their WAL record is durable. `maintenance` cuts finished time
//! windows of the head into blocks (format in `block.rs`), checkpoints what remains into a fresh WAL
//! segment and drops the older segments, compacts adjacent blocks (2h → 6h → 24h with the default
//! block duration) and deletes blocks past retention. Reads merge the head and the blocks overlapping
//! the query range, pruning blocks by `meta.json` time range, then series by postings, and fetching
//! only the pages of the matching series.

mod block;
mod encoding;
mod head;
mod postings;
mod record;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::config::StorageConfig;
use common::limits::Overrides;
use common::tenant::TENANT_LABEL;
use common::{Labels, Matcher, TenantId, TenantSet};
use parking_lot::{Mutex, RwLock};
use storage::block::{BlockMeta, BlockStore};
use storage::wal::{Wal, WalOptions};

use self::block::{BlockIndex, BlockWriter, CHUNKS_FILE, FORMAT_VERSION, INDEX_FILE};
use self::head::Head;
use crate::model::{
    Exemplar, HistogramSample, Metadata, RawWrite, Sample, SeriesData, SeriesSource, WriteBatch,
    WriteStats,
};
use crate::Error;

/// Signal name of metrics blocks and WAL folders.
const SIGNAL: &str = "metrics";
/// Wall-clock grace after a window's end (plus the out-of-order window) before it is cut.
const CUT_GRACE_MS: i64 = 60_000;
/// Checkpoint records are sliced to about this size.
const CHECKPOINT_RECORD_BYTES: usize = 8 << 20;
/// Block lists are re-read from the bucket after this long (other nodes may add or compact blocks).
const BLOCK_LIST_TTL: Duration = Duration::from_secs(30);
/// Decoded block indexes kept in memory.
const INDEX_CACHE_BLOCKS: usize = 1024;
/// Blocks without `meta.json` older than this are removed by maintenance.
const PARTIAL_BLOCK_MIN_AGE: Duration = Duration::from_secs(3600);

/// What a write stored and what it rejected. A non-empty `rejected` maps to HTTP 400 (the valid rest
/// is stored, as Prometheus does).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// What was written.
    pub stats: WriteStats,
    /// The first few rejection messages.
    pub rejected: Vec<String>,
    /// How many samples (floats and histograms) were rejected.
    pub rejected_count: usize,
}

/// Per-tenant figures for `/metrics` and the benchmark.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantStats {
    /// Series in the head.
    pub active_series: u64,
    /// Float samples in the head.
    pub head_samples: u64,
    /// Estimated heap bytes of head series (structs, labels, sample chunks, lookup maps; without
    /// postings, symbols and allocator overhead).
    pub head_bytes: u64,
    /// Bytes of WAL segments on disk.
    pub wal_bytes: u64,
    /// Blocks in the object store (as last listed).
    pub blocks: u64,
    /// Bytes of those blocks (index + chunks).
    pub block_bytes: u64,
    /// Float samples in those blocks.
    pub block_samples: u64,
}

/// Figures of the whole store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Per tenant (also tenants that only have blocks), sorted by tenant.
    pub tenants: BTreeMap<TenantId, TenantStats>,
}

/// The tenant's live state on this node.
struct TenantDb {
    head: Head,
    wal: Wal,
    /// Writes hold it shared; cutting and checkpointing hold it exclusively so that no append is
    /// half-applied or lands in a WAL segment about to be deleted.
    gate: tokio::sync::RwLock<()>,
    /// One maintenance per tenant at a time.
    maint: tokio::sync::Mutex<()>,
}

struct BlockList {
    metas: Arc<Vec<BlockMeta>>,
    fetched: Instant,
}

struct Inner {
    data_dir: PathBuf,
    block_ms: i64,
    wal_opts: WalOptions,
    overrides: Overrides,
    blocks: BlockStore,
    tenants: RwLock<HashMap<TenantId, Arc<TenantDb>>>,
    block_lists: Mutex<HashMap<TenantId, BlockList>>,
    indexes: Mutex<HashMap<String, Arc<BlockIndex>>>,
    closed: AtomicBool,
    /// Serialises maintenance runs (periodic, `flush`, tests): two compactions of the same blocks
    /// would upload the merged block twice.
    maintenance: tokio::sync::Mutex<()>,
}

/// The metrics store of all tenants. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct MetricsStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MetricsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsStore")
            .field("data_dir", &self.inner.data_dir)
            .finish()
    }
}

fn wal_dir(data_dir: &Path, tenant: &TenantId) -> PathBuf {
    data_dir.join(tenant.as_str()).join(SIGNAL).join("wal")
}

fn block_meta(
    min_time: i64,
    max_time: i64,
    level: u32,
    sources: Vec<ulid::Ulid>,
    stats: serde_json::Value,
) -> BlockMeta {
    BlockMeta {
        ulid: ulid::Ulid::new(),
        signal: SIGNAL.to_string(),
        version: FORMAT_VERSION,
        min_time,
        max_time,
        level,
        sources,
        stats,
    }
}

fn stat(meta: &BlockMeta, key: &str) -> u64 {
    meta.stats.get(key).and_then(|v| v.as_u64()).unwrap_or(0)
}

/// Per-tenant matchers of a (possibly federated) read: matchers on `__tenant_id__` select tenants and
/// are removed; `None` when they exclude this tenant.
fn tenant_matchers(
    tenant: &TenantId,
    federated: bool,
    matchers: &[Matcher],
) -> Option<Vec<Matcher>> {
    if !federated {
        return Some(matchers.to_vec());
    }
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

fn with_tenant(mut labels: Labels, tenant: &TenantId, federated: bool) -> Labels {
    if federated {
        labels.set(TENANT_LABEL, tenant.as_str());
    }
    labels
}

/// Merges series data from several sources (blocks, head) sharing label sets: samples sorted by time,
/// identical timestamps kept once (the first source wins).
fn merge_series(mut parts: Vec<SeriesData>) -> Vec<SeriesData> {
    // Stable: parts of one series keep their source order (blocks by time, then the head).
    parts.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut out: Vec<SeriesData> = Vec::with_capacity(parts.len());
    let mut merged_any = false;
    let mut it = parts.into_iter().peekable();
    while let Some(mut first) = it.next() {
        if it.peek().is_some_and(|p| p.labels == first.labels) {
            // Collect the run first so the samples are copied once into an exactly sized vector
            // (a day of 2 h blocks would otherwise regrow it about four times).
            let mut run = Vec::new();
            while let Some(p) = it.next_if(|p| p.labels == first.labels) {
                run.push(p);
            }
            let n: usize = run.iter().map(|p| p.samples.len()).sum();
            let h: usize = run.iter().map(|p| p.histograms.len()).sum();
            first.samples.reserve_exact(n);
            first.histograms.reserve_exact(h);
            for p in run {
                first.samples.extend(p.samples);
                first.histograms.extend(p.histograms);
            }
            merged_any = true;
        }
        out.push(first);
    }
    if merged_any {
        for s in &mut out {
            normalise(&mut s.samples, &mut s.histograms);
        }
    }
    out
}

fn normalise(samples: &mut Vec<Sample>, hists: &mut Vec<HistogramSample>) {
    if !samples.windows(2).all(|w| w[0].t < w[1].t) {
        samples.sort_by_key(|s| s.t);
        samples.dedup_by_key(|s| s.t);
    }
    if !hists.windows(2).all(|w| w[0].t < w[1].t) {
        hists.sort_by_key(|h| h.t);
        hists.dedup_by_key(|h| h.t);
    }
}

fn overlaps(meta: &BlockMeta, mint: i64, maxt: i64) -> bool {
    meta.min_time <= maxt && meta.max_time >= mint
}

impl MetricsStore {
    /// Opens the store: replays the WAL of every tenant found under `<data_dir>/<tenant>/metrics/wal`
    /// into its head. Blocks are listed lazily per tenant, including tenants that exist only in the
    /// bucket, so a node with an empty data dir serves what the bucket holds.
    pub async fn open(
        cfg: &StorageConfig,
        overrides: Overrides,
        blocks: BlockStore,
    ) -> Result<Self, Error> {
        let store = Self {
            inner: Arc::new(Inner {
                data_dir: cfg.data_dir.clone(),
                block_ms: cfg.block_duration.as_millis().max(60_000),
                wal_opts: WalOptions {
                    fsync: cfg.wal_fsync,
                    ..WalOptions::default()
                },
                overrides,
                blocks,
                tenants: RwLock::new(HashMap::new()),
                block_lists: Mutex::new(HashMap::new()),
                indexes: Mutex::new(HashMap::new()),
                closed: AtomicBool::new(false),
                maintenance: tokio::sync::Mutex::new(()),
            }),
        };
        let entries = match std::fs::read_dir(&cfg.data_dir) {
            Ok(e) => e
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| io_err(&cfg.data_dir, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(&cfg.data_dir, e)),
        };
        for entry in entries {
            let Some(tenant) = entry
                .file_name()
                .to_str()
                .and_then(|n| TenantId::new(n).ok())
            else {
                continue;
            };
            if !wal_dir(&cfg.data_dir, &tenant).is_dir() {
                continue;
            }
            // Samples older than the newest block's end are in the bucket already (a crash between
            // upload and WAL truncation leaves them in the log): replay skips them.
            let metas = store.block_list(&tenant, true).await?;
            let head = Head::default();
            if let Some(end) = metas
                .iter()
                .filter(|m| m.level >= 1)
                .map(|m| m.max_time)
                .max()
            {
                head.set_min_valid_time(end.saturating_add(1));
            }
            store.open_tenant(&tenant, head)?;
        }
        Ok(store)
    }

    fn open_tenant(&self, tenant: &TenantId, head: Head) -> Result<Arc<TenantDb>, Error> {
        let dir = wal_dir(&self.inner.data_dir, tenant);
        let started = Instant::now();
        let mut records = 0u64;
        let mut bad = 0u64;
        let wal = Wal::open(&dir, self.inner.wal_opts.clone(), |_seg, rec| {
            records += 1;
            match record::decode(rec) {
                Ok(b) => head.replay(b),
                // A CRC-valid record we cannot parse is a bug or a newer format: keep serving the
                // rest rather than refusing to start.
                Err(e) => {
                    bad += 1;
                    tracing::error!(tenant = %tenant, error = %e, "skipping undecodable metrics wal record");
                }
            }
            Ok(())
        })?;
        tracing::info!(
            tenant = %tenant,
            records,
            bad,
            series = head.active_series(),
            samples = head.sample_count(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "metrics wal replayed"
        );
        let db = Arc::new(TenantDb {
            head,
            wal,
            gate: tokio::sync::RwLock::new(()),
            maint: tokio::sync::Mutex::new(()),
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

    /// The tenant's database for a write (an error once the store is closed). A tenant new to this
    /// node may have blocks in the bucket already: learn where they end first, so that the head
    /// rejects samples for windows that are cut.
    async fn db_for_write(&self, tenant: &TenantId) -> Result<Arc<TenantDb>, Error> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Internal("metrics store is closed".into()));
        }
        match self.tenant_db(tenant) {
            Some(db) => Ok(db),
            None => {
                self.block_list(tenant, false).await?;
                self.tenant_db_or_create(tenant)
            }
        }
    }

    fn tenant_db_or_create(&self, tenant: &TenantId) -> Result<Arc<TenantDb>, Error> {
        if let Some(db) = self.tenant_db(tenant) {
            return Ok(db);
        }
        // Creation does file I/O once per tenant; a lock keeps two first writes from racing.
        static CREATE: Mutex<()> = Mutex::new(());
        let _g = CREATE.lock();
        if let Some(db) = self.tenant_db(tenant) {
            return Ok(db);
        }
        let head = Head::default();
        if let Some(end) = self.cached_block_end(tenant) {
            head.set_min_valid_time(end.saturating_add(1));
        }
        self.open_tenant(tenant, head)
    }

    fn cached_block_end(&self, tenant: &TenantId) -> Option<i64> {
        self.inner
            .block_lists
            .lock()
            .get(tenant)
            .and_then(|l| l.metas.iter().map(|m| m.max_time).max())
    }

    /// Validates and durably appends a write (see [`WriteOutcome`] for partial rejections).
    /// Returns only once the WAL record is durable. Errors: `TooManyRequests` when the request would
    /// exceed `max_active_series` (nothing is written then), `Storage` when the WAL fails.
    pub async fn write(&self, tenant: &TenantId, batch: WriteBatch) -> Result<WriteOutcome, Error> {
        let db = self.db_for_write(tenant).await?;
        let limits = self.inner.overrides.get(tenant);
        let _g = db.gate.read().await;
        let (rec, outcome) = db.head.append(tenant, batch, &limits)?;
        if !rec.is_empty() {
            db.wal.append(record::encode(&rec)).await?;
        }
        Ok(outcome)
    }

    /// [`MetricsStore::write`] of a borrowed float-only write (the remote_write fast path): the
    /// same validation, limits, outcome and durability, without per-series allocations.
    pub async fn write_raw(
        &self,
        tenant: &TenantId,
        w: &RawWrite<'_>,
    ) -> Result<WriteOutcome, Error> {
        let db = self.db_for_write(tenant).await?;
        let limits = self.inner.overrides.get(tenant);
        let _g = db.gate.read().await;
        let (rec, outcome) = db.head.append_raw(tenant, w, &limits)?;
        if !rec.is_empty() {
            db.wal.append(rec).await?;
        }
        Ok(outcome)
    }

    // ------------------------------------------------------------------------------------------
    // Blocks

    async fn block_list(
        &self,
        tenant: &TenantId,
        refresh: bool,
    ) -> Result<Arc<Vec<BlockMeta>>, Error> {
        if !refresh {
            if let Some(l) = self.inner.block_lists.lock().get(tenant) {
                if l.fetched.elapsed() < BLOCK_LIST_TTL {
                    return Ok(l.metas.clone());
                }
            }
        }
        let mut metas = self.inner.blocks.list_blocks(tenant, SIGNAL).await?;
        metas.retain(|m| {
            let ok = m.version == FORMAT_VERSION;
            if !ok {
                tracing::warn!(tenant = %tenant, block = %m.ulid, version = m.version, "skipping metrics block of unknown format version");
            }
            ok
        });
        let metas = Arc::new(metas);
        self.inner.block_lists.lock().insert(
            tenant.clone(),
            BlockList {
                metas: metas.clone(),
                fetched: Instant::now(),
            },
        );
        Ok(metas)
    }

    /// The blocks of `tenant` overlapping `[mint, maxt]` with their indexes; blocks compacted away
    /// since the list was read are skipped.
    async fn overlapping_blocks(
        &self,
        tenant: &TenantId,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(BlockMeta, Arc<BlockIndex>)>, Error> {
        let mut out = Vec::new();
        for meta in self
            .block_list(tenant, false)
            .await?
            .iter()
            .filter(|m| overlaps(m, mint, maxt))
        {
            match self.block_index(tenant, meta).await {
                Ok(ix) => out.push((meta.clone(), ix)),
                Err(Error::Storage(e)) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn block_index(
        &self,
        tenant: &TenantId,
        meta: &BlockMeta,
    ) -> Result<Arc<BlockIndex>, Error> {
        let key = meta.ulid.to_string();
        if let Some(ix) = self.inner.indexes.lock().get(&key) {
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
            // Crude but bounded: drop an arbitrary entry; a real LRU can come with the cache work.
            if let Some(k) = cache.keys().next().cloned() {
                cache.remove(&k);
            }
        }
        cache.insert(key, ix.clone());
        Ok(ix)
    }

    /// Reads series `ids` of a block: fetches only the pages they live in, coalescing adjacent pages.
    async fn read_block_series(
        &self,
        tenant: &TenantId,
        meta: &BlockMeta,
        ix: &BlockIndex,
        ids: &[u32],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesData>, Error> {
        let mut needed = BTreeSet::new();
        for &i in ids {
            let (vp, tp) = ix.pages_of(i);
            needed.insert(vp);
            needed.extend(tp);
        }
        let pages: Vec<u32> = needed.into_iter().collect();
        let mut loaded: HashMap<u32, Vec<u8>> = HashMap::with_capacity(pages.len());
        let mut i = 0;
        while i < pages.len() {
            // Adjacent pages are fetched with one ranged read.
            let mut j = i;
            while j + 1 < pages.len() && pages[j + 1] == pages[j] + 1 {
                j += 1;
            }
            let start = ix.page_range(pages[i]).start;
            let end = ix.page_range(pages[j]).end;
            let bytes = self
                .inner
                .blocks
                .get_range(tenant, SIGNAL, meta.ulid, CHUNKS_FILE, start..end)
                .await?;
            for &p in &pages[i..=j] {
                let r = ix.page_range(p);
                let comp = bytes
                    .get((r.start - start) as usize..(r.end - start) as usize)
                    .ok_or_else(|| {
                        Error::Internal(format!("short read of block {} chunks", meta.ulid))
                    })?;
                loaded.insert(p, ix.decompress_page(p, comp)?);
            }
            i = j + 1;
        }
        let mut out = Vec::with_capacity(ids.len());
        for &s in ids {
            let (samples, histograms) =
                ix.decode_series(s, |p| loaded.get(&p).map(Vec::as_slice), mint, maxt)?;
            if !samples.is_empty() || !histograms.is_empty() {
                out.push(SeriesData {
                    labels: ix.labels(s),
                    samples,
                    histograms,
                });
            }
        }
        Ok(out)
    }

    /// One tenant's series matching `matchers` in `[mint, maxt]`, merged over head and blocks, sorted.
    /// With `limits`, fails as soon as one source alone exceeds the series limit or the samples
    /// decoded so far exceed the samples limit, before more is read or decoded.
    async fn select_tenant(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        limits: Option<QueryLimits>,
    ) -> Result<Vec<SeriesData>, Error> {
        let lim = limits.unwrap_or_default();
        let mut parts = Vec::new();
        let mut sources = 0;
        let mut samples = 0usize;
        for (meta, ix) in self.overlapping_blocks(tenant, mint, maxt).await? {
            let ids = ix.select(matchers, mint, maxt);
            if ids.is_empty() {
                continue;
            }
            lim.check_series(tenant, ids.len())?;
            match self
                .read_block_series(tenant, &meta, &ix, &ids, mint, maxt)
                .await
            {
                Ok(s) => {
                    samples += s
                        .iter()
                        .map(|s| s.samples.len() + s.histograms.len())
                        .sum::<usize>();
                    lim.check_samples(tenant, samples)?;
                    parts.extend(s);
                }
                Err(Error::Storage(e)) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            }
            sources += 1;
        }
        if let Some(db) = self.tenant_db(tenant) {
            let head = db
                .head
                .select(matchers, mint, maxt, lim.max_series)
                .ok_or_else(|| lim.series_error(tenant, lim.max_series + 1))?;
            samples += head
                .iter()
                .map(|s| s.samples.len() + s.histograms.len())
                .sum::<usize>();
            lim.check_samples(tenant, samples)?;
            parts.extend(head);
            sources += 1;
        }
        if sources <= 1 {
            parts.sort_by(|a, b| a.labels.cmp(&b.labels));
            return Ok(parts);
        }
        Ok(merge_series(parts))
    }

    /// Series matching `matchers` with data in `[mint, maxt]` (ms, inclusive) over the tenants, sorted by
    /// labels; federated reads add `__tenant_id__` (and matchers on it select tenants). Head and block
    /// data are merged, identical timestamps kept once. No query limits here (see [`Self::source`]).
    pub async fn select(
        &self,
        tenants: &TenantSet,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesData>, Error> {
        let fed = tenants.is_federated();
        let mut out = Vec::new();
        for t in tenants.tenants() {
            let Some(ms) = tenant_matchers(t, fed, matchers) else {
                continue;
            };
            for mut s in self.select_tenant(t, &ms, mint, maxt, None).await? {
                s.labels = with_tenant(s.labels, t, fed);
                out.push(s);
            }
        }
        if fed {
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        Ok(out)
    }

    /// Label sets of one tenant's series matching `matchers` with data in range (unsorted, may repeat).
    async fn series_tenant(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        out: &mut BTreeSet<Labels>,
    ) -> Result<(), Error> {
        for (_, ix) in self.overlapping_blocks(tenant, mint, maxt).await? {
            out.extend(
                ix.select(matchers, mint, maxt)
                    .into_iter()
                    .map(|i| ix.labels(i)),
            );
        }
        if let Some(db) = self.tenant_db(tenant) {
            out.extend(db.head.series(matchers, mint, maxt));
        }
        Ok(())
    }

    async fn collect_series(
        &self,
        tenants: &TenantSet,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<BTreeSet<Labels>, Error> {
        let fed = tenants.is_federated();
        let all = [Vec::new()];
        let selectors = if selectors.is_empty() {
            &all[..]
        } else {
            selectors
        };
        let mut out = BTreeSet::new();
        for t in tenants.tenants() {
            let mut set = BTreeSet::new();
            for sel in selectors {
                let Some(ms) = tenant_matchers(t, fed, sel) else {
                    continue;
                };
                self.series_tenant(t, &ms, mint, maxt, &mut set).await?;
            }
            out.extend(set.into_iter().map(|l| with_tenant(l, t, fed)));
        }
        Ok(out)
    }

    /// Label sets of series matching any of `selectors` (all series when empty) with data in range,
    /// sorted, at most `limit` (0 = unlimited).
    pub async fn series(
        &self,
        tenants: &TenantSet,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        limit: usize,
    ) -> Result<Vec<Labels>, Error> {
        let set = self.collect_series(tenants, selectors, mint, maxt).await?;
        Ok(take(set.into_iter(), limit))
    }

    /// Whether the no-selector fast path applies: the whole head lies within `[mint, maxt]`.
    fn head_within(db: &TenantDb, mint: i64, maxt: i64) -> bool {
        db.head
            .time_range()
            .is_none_or(|(lo, hi)| lo >= mint && hi <= maxt)
    }

    /// Label names of series matching any of `selectors` (all series when empty) with data in range,
    /// sorted, at most `limit` (0 = unlimited).
    pub async fn label_names(
        &self,
        tenants: &TenantSet,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        let fast = self
            .labels_from_postings(
                tenants,
                selectors,
                mint,
                maxt,
                |head| head.all_label_names(),
                |ix| {
                    ix.postings
                        .names()
                        .map(|n| ix.symbols.get(n).to_string())
                        .collect()
                },
            )
            .await?;
        match fast {
            Some(names) => Ok(take(names.into_iter(), limit)),
            None => {
                self.label_names_slow(tenants, selectors, mint, maxt, limit)
                    .await
            }
        }
    }

    /// The postings fast path of [`Self::label_names`] and [`Self::label_values`]: with no selectors,
    /// one tenant, and the head and every overlapping block lying wholly inside `[mint, maxt]`, the
    /// answer is the union of what `from_head` and `from_block` read from the indexes, without
    /// touching series. `None` when the path does not apply.
    async fn labels_from_postings(
        &self,
        tenants: &TenantSet,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        from_head: impl Fn(&Head) -> Vec<String>,
        from_block: impl Fn(&BlockIndex) -> Vec<String>,
    ) -> Result<Option<BTreeSet<String>>, Error> {
        if !selectors.is_empty() || tenants.is_federated() {
            return Ok(None);
        }
        let t = &tenants.tenants()[0];
        let db = self.tenant_db(t);
        if db
            .as_ref()
            .is_some_and(|db| !Self::head_within(db, mint, maxt))
        {
            return Ok(None);
        }
        let blocks = self.block_list(t, false).await?;
        if blocks
            .iter()
            .any(|m| overlaps(m, mint, maxt) && (m.min_time < mint || m.max_time > maxt))
        {
            return Ok(None);
        }
        let mut out: BTreeSet<String> = db
            .map(|db| from_head(&db.head))
            .unwrap_or_default()
            .into_iter()
            .collect();
        for (_, ix) in self.overlapping_blocks(t, mint, maxt).await? {
            out.extend(from_block(&ix));
        }
        Ok(Some(out))
    }

    async fn label_names_slow(
        &self,
        tenants: &TenantSet,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        let mut names = BTreeSet::new();
        for l in self.collect_series(tenants, selectors, mint, maxt).await? {
            for p in &l {
                if !names.contains(&p.name) {
                    names.insert(p.name.clone());
                }
            }
        }
        Ok(take(names.into_iter(), limit))
    }

    /// Values of label `name` over series matching any of `selectors` (all series when empty) with data
    /// in range, sorted, at most `limit` (0 = unlimited).
    pub async fn label_values(
        &self,
        tenants: &TenantSet,
        name: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        let fast = self
            .labels_from_postings(
                tenants,
                selectors,
                mint,
                maxt,
                |head| head.all_label_values(name),
                |ix| match ix.symbols.lookup(name) {
                    Some(n) => ix
                        .postings
                        .values(n)
                        .map(|(v, _)| ix.symbols.get(v).to_string())
                        .collect(),
                    None => Vec::new(),
                },
            )
            .await?;
        if let Some(values) = fast {
            return Ok(take(values.into_iter(), limit));
        }
        let mut values = BTreeSet::new();
        for l in self.collect_series(tenants, selectors, mint, maxt).await? {
            if let Some(v) = l.get(name) {
                if !values.contains(v) {
                    values.insert(v.to_string());
                }
            }
        }
        Ok(take(values.into_iter(), limit))
    }

    /// Metadata per metric family over the tenants (latest per tenant wins; distinct entries of
    /// different tenants are all listed), sorted by family; `metric` filters to one family; limits
    /// of 0 are unlimited.
    pub fn metadata(
        &self,
        tenants: &TenantSet,
        metric: Option<&str>,
        limit: usize,
        limit_per_metric: usize,
    ) -> Vec<(String, Vec<Metadata>)> {
        let mut map: BTreeMap<String, Vec<Metadata>> = BTreeMap::new();
        for t in tenants.tenants() {
            let Some(db) = self.tenant_db(t) else {
                continue;
            };
            for (family, m) in db.head.metadata() {
                if metric.is_some_and(|f| f != family) {
                    continue;
                }
                let list = map.entry(family).or_default();
                if !list.contains(&m) {
                    list.push(m);
                }
            }
        }
        let mut out: Vec<(String, Vec<Metadata>)> = map.into_iter().collect();
        if limit > 0 {
            out.truncate(limit);
        }
        if limit_per_metric > 0 {
            for (_, l) in &mut out {
                l.truncate(limit_per_metric);
            }
        }
        out
    }

    /// Exemplars in `[mint, maxt]` of series matching any of `selectors`, sorted by series labels.
    /// Exemplars live in the head only (a bounded ring per series), as in Prometheus.
    pub async fn exemplars(
        &self,
        tenants: &TenantSet,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<Exemplar>)>, Error> {
        let fed = tenants.is_federated();
        let all = [Vec::new()];
        let selectors = if selectors.is_empty() {
            &all[..]
        } else {
            selectors
        };
        let mut out: BTreeMap<Labels, Vec<Exemplar>> = BTreeMap::new();
        for t in tenants.tenants() {
            let Some(db) = self.tenant_db(t) else {
                continue;
            };
            for sel in selectors {
                let Some(ms) = tenant_matchers(t, fed, sel) else {
                    continue;
                };
                for (l, es) in db.head.exemplars(&ms, mint, maxt) {
                    out.insert(with_tenant(l, t, fed), es);
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    /// A [`SeriesSource`] over `tenants` for PromQL, enforcing each tenant's `max_series_per_query` and
    /// `max_samples_per_query`.
    pub fn source(&self, tenants: TenantSet) -> impl SeriesSource {
        TenantSource {
            store: self.clone(),
            tenants,
        }
    }

    // ------------------------------------------------------------------------------------------
    // Maintenance

    /// Cuts finished windows of every head into blocks (a window is finished when the wall clock passes
    /// its end + the tenant's out-of-order window + 1 minute), checkpoints and truncates the WAL,
    /// compacts adjacent blocks and applies retention per tenant. Called periodically by the server.
    pub async fn maintenance(&self, now_ms: i64) -> Result<(), Error> {
        let _m = self.inner.maintenance.lock().await;
        let mut tenants: BTreeSet<TenantId> = self.inner.tenants.read().keys().cloned().collect();
        tenants.extend(self.inner.blocks.list_tenants(SIGNAL).await?);
        let mut first_err = None;
        for t in tenants {
            if let Err(e) = self.maintain_tenant(&t, now_ms, false).await {
                tracing::warn!(tenant = %t, error = %e, "metrics maintenance failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    async fn maintain_tenant(
        &self,
        tenant: &TenantId,
        now_ms: i64,
        force: bool,
    ) -> Result<(), Error> {
        let limits = self.inner.overrides.get(tenant);
        if let Some(db) = self.tenant_db(tenant) {
            let _m = db.maint.lock().await;
            let boundary = if force {
                i64::MAX
            } else {
                let ready = now_ms - limits.out_of_order_time_window.as_millis() - CUT_GRACE_MS;
                ready.div_euclid(self.inner.block_ms) * self.inner.block_ms
            };
            self.cut_head(tenant, &db, boundary).await?;
        }
        self.compact(tenant).await?;
        self.apply_retention(tenant, now_ms, limits.retention_period.as_millis())
            .await?;
        if let Err(e) = self
            .inner
            .blocks
            .gc_partial(tenant, SIGNAL, PARTIAL_BLOCK_MIN_AGE)
            .await
        {
            tracing::warn!(tenant = %tenant, error = %e, "removing partial metrics blocks failed");
        }
        Ok(())
    }

    /// Cuts head data older than `boundary` (window-aligned; `i64::MAX` = everything) into level-1
    /// blocks, one per window, then drops it from the head and checkpoints the WAL.
    async fn cut_head(&self, tenant: &TenantId, db: &TenantDb, boundary: i64) -> Result<(), Error> {
        let Some((lo, hi)) = db.head.time_range() else {
            return Ok(());
        };
        if lo >= boundary {
            return Ok(());
        }
        let bms = self.inner.block_ms;
        let boundary = boundary.min((hi.div_euclid(bms) + 1).saturating_mul(bms));
        {
            // Close the door first: once no write is in flight and the minimum valid time is raised,
            // nothing can add data below the boundary while we read it.
            let _g = db.gate.write().await;
            db.head.set_min_valid_time(boundary);
        }
        let mut done = i64::MIN;
        let mut ws = lo.div_euclid(bms) * bms;
        let mut result = Ok(());
        while ws < boundary {
            let we = ws + bms;
            match self.cut_window(tenant, db, ws, we).await {
                Ok(()) => done = we,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            ws = we;
        }
        if done > i64::MIN {
            let _g = db.gate.write().await;
            db.head.truncate_before(done);
            self.checkpoint(db).await?;
        }
        result
    }

    async fn cut_window(
        &self,
        tenant: &TenantId,
        db: &TenantDb,
        ws: i64,
        we: i64,
    ) -> Result<(), Error> {
        let series = db.head.sorted_series(ws, we - 1);
        if series.is_empty() {
            return Ok(());
        }
        let mut w = BlockWriter::default();
        for (labels, id) in series {
            let (f, h) = db.head.series_data(id, ws, we - 1);
            w.add(&labels, &f, &h)?;
        }
        if w.is_empty() {
            return Ok(());
        }
        self.upload(tenant, w, ws, we - 1, 1, Vec::new()).await?;
        Ok(())
    }

    async fn upload(
        &self,
        tenant: &TenantId,
        w: BlockWriter,
        min_time: i64,
        max_time: i64,
        level: u32,
        sources: Vec<ulid::Ulid>,
    ) -> Result<BlockMeta, Error> {
        let (index, chunks, counts) = w.finish()?;
        let stats = serde_json::json!({
            "series": counts.series,
            "samples": counts.samples,
            "histograms": counts.histograms,
            "data_min_time": counts.min_time,
            "data_max_time": counts.max_time,
            "index_bytes": index.len(),
            "chunks_bytes": chunks.len(),
            "bytes": index.len() + chunks.len(),
        });
        let meta = block_meta(min_time, max_time, level, sources, stats);
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
            tenant = %tenant, block = %meta.ulid, level, series = counts.series, samples = counts.samples,
            bytes = stat(&meta, "bytes"), "metrics block written"
        );
        self.inner.block_lists.lock().remove(tenant);
        Ok(meta)
    }

    /// Writes the head as a checkpoint into a fresh WAL segment and deletes the older segments.
    /// The caller holds the gate exclusively, so the new segment starts with the checkpoint.
    async fn checkpoint(&self, db: &TenantDb) -> Result<(), Error> {
        let seg = db.wal.cut_segment()?;
        for rec in db.head.checkpoint(CHECKPOINT_RECORD_BYTES) {
            db.wal.append(record::encode(&rec)).await?;
        }
        db.wal.truncate_before(seg)?;
        Ok(())
    }

    /// Merges groups of adjacent blocks planned by `storage::plan_compaction` (block duration × 1, 3, 12).
    async fn compact(&self, tenant: &TenantId) -> Result<(), Error> {
        let b = self.inner.block_ms;
        let metas = self.block_list(tenant, true).await?;
        for group in storage::plan_compaction(&metas, &[b, 3 * b, 12 * b]) {
            self.compact_group(tenant, &group).await?;
        }
        Ok(())
    }

    async fn compact_group(
        &self,
        tenant: &TenantId,
        group: &[BlockMeta],
    ) -> Result<BlockMeta, Error> {
        // Streaming k-way merge over the blocks' sorted series: memory is the compressed chunk files
        // plus one decompressed page per block, not the decoded data.
        struct Cursor {
            ix: Arc<BlockIndex>,
            chunks: Bytes,
            next: u32,
            /// Decompressed pages in use (value and timestamp pages advance independently).
            pages: HashMap<u32, Vec<u8>>,
        }
        let mut cursors = Vec::with_capacity(group.len());
        for m in group {
            let ix = self.block_index(tenant, m).await?;
            let chunks = self
                .inner
                .blocks
                .get(tenant, SIGNAL, m.ulid, CHUNKS_FILE)
                .await?;
            if chunks.len() as u64 != ix.chunks_len {
                return Err(Error::Internal(format!(
                    "block {} chunks file does not match its index",
                    m.ulid
                )));
            }
            cursors.push(Cursor {
                ix,
                chunks,
                next: 0,
                pages: HashMap::new(),
            });
        }
        let mut w = BlockWriter::default();
        let mut heads: Vec<Option<Labels>> = cursors
            .iter()
            .map(|c| (c.ix.series_count() > 0).then(|| c.ix.labels(0)))
            .collect();
        while let Some(min) = heads.iter().flatten().min().cloned() {
            let mut floats = Vec::new();
            let mut hists = Vec::new();
            let mut parts = 0;
            for (k, c) in cursors.iter_mut().enumerate() {
                if heads[k].as_ref() != Some(&min) {
                    continue;
                }
                let i = c.next;
                let (vp, tp) = c.ix.pages_of(i);
                for p in std::iter::once(vp).chain(tp) {
                    if !c.pages.contains_key(&p) {
                        if c.pages.len() >= 4 {
                            // Series move forward through value pages, and timestamp pages are
                            // few: keep just the pages this series needs.
                            c.pages.retain(|&k, _| k == vp || Some(k) == tp);
                        }
                        let r = c.ix.page_range(p);
                        let comp =
                            c.chunks
                                .get(r.start as usize..r.end as usize)
                                .ok_or_else(|| {
                                    Error::Internal("block chunks shorter than its index".into())
                                })?;
                        let page = c.ix.decompress_page(p, comp)?;
                        c.pages.insert(p, page);
                    }
                }
                let pages = &c.pages;
                let (f, h) = c.ix.decode_series(
                    i,
                    |p| pages.get(&p).map(Vec::as_slice),
                    i64::MIN,
                    i64::MAX,
                )?;
                floats.extend(f);
                hists.extend(h);
                parts += 1;
                c.next += 1;
                heads[k] = ((c.next as usize) < c.ix.series_count()).then(|| c.ix.labels(c.next));
            }
            if parts > 1 {
                normalise(&mut floats, &mut hists);
            }
            w.add(&min, &floats, &hists)?;
        }
        let level = group.iter().map(|m| m.level).max().unwrap_or(1) + 1;
        let mut sources: Vec<ulid::Ulid> = Vec::new();
        for m in group {
            if m.sources.is_empty() {
                sources.push(m.ulid);
            } else {
                sources.extend(m.sources.iter().copied());
            }
        }
        let min_time = group.iter().map(|m| m.min_time).min().unwrap_or(0);
        let max_time = group.iter().map(|m| m.max_time).max().unwrap_or(0);
        let meta = self
            .upload(tenant, w, min_time, max_time, level, sources)
            .await?;
        for m in group {
            self.delete_block(tenant, m).await?;
        }
        Ok(meta)
    }

    async fn delete_block(&self, tenant: &TenantId, m: &BlockMeta) -> Result<(), Error> {
        self.inner
            .blocks
            .delete_block(tenant, SIGNAL, m.ulid)
            .await?;
        self.inner.indexes.lock().remove(&m.ulid.to_string());
        self.inner.block_lists.lock().remove(tenant);
        Ok(())
    }

    async fn apply_retention(
        &self,
        tenant: &TenantId,
        now_ms: i64,
        retention_ms: i64,
    ) -> Result<(), Error> {
        if retention_ms <= 0 {
            return Ok(());
        }
        let metas = self.block_list(tenant, false).await?;
        let expired = storage::expired(&metas, now_ms, retention_ms);
        for m in metas.iter().filter(|m| expired.contains(&m.ulid)) {
            tracing::info!(tenant = %tenant, block = %m.ulid, "deleting metrics block past retention");
            self.delete_block(tenant, m).await?;
        }
        Ok(())
    }

    /// Cuts the whole head of every tenant into blocks now (tests and the benchmark), regardless of the
    /// wall clock; afterwards samples older than the cut are rejected as out of bounds.
    pub async fn flush_all_to_blocks(&self) -> Result<(), Error> {
        let _m = self.inner.maintenance.lock().await;
        let tenants: Vec<(TenantId, Arc<TenantDb>)> = self
            .inner
            .tenants
            .read()
            .iter()
            .map(|(t, d)| (t.clone(), d.clone()))
            .collect();
        for (t, db) in tenants {
            let _m = db.maint.lock().await;
            self.cut_head(&t, &db, i64::MAX).await?;
        }
        Ok(())
    }

    /// Compacts every tenant's blocks as far as the plan allows (tests and the benchmark).
    pub async fn compact_all(&self) -> Result<(), Error> {
        let _m = self.inner.maintenance.lock().await;
        let tenants: Vec<TenantId> = self.inner.tenants.read().keys().cloned().collect();
        for t in tenants {
            self.compact(&t).await?;
        }
        Ok(())
    }

    /// Shutdown: waits for in-flight writes, makes the WAL durable and closes it. The head is not cut
    /// into blocks; it is rebuilt from the WAL on the next start.
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
    pub fn stats(&self) -> StoreStats {
        let mut map: BTreeMap<TenantId, TenantStats> = BTreeMap::new();
        for (t, db) in self.inner.tenants.read().iter() {
            let s = map.entry(t.clone()).or_default();
            s.active_series = db.head.active_series();
            s.head_samples = db.head.sample_count();
            let (structs, chunks, other) = db.head.memory_estimate();
            s.head_bytes = (structs + chunks + other) as u64;
            s.wal_bytes = db.wal.disk_size();
        }
        for (t, l) in self.inner.block_lists.lock().iter() {
            let s = map.entry(t.clone()).or_default();
            s.blocks = l.metas.len() as u64;
            s.block_bytes = l.metas.iter().map(|m| stat(m, "bytes")).sum();
            s.block_samples = l.metas.iter().map(|m| stat(m, "samples")).sum();
        }
        StoreStats { tenants: map }
    }

    /// Refreshes the block listing of every known tenant (so `stats` is current).
    pub async fn refresh_block_lists(&self) -> Result<(), Error> {
        let mut tenants: BTreeSet<TenantId> = self.inner.tenants.read().keys().cloned().collect();
        tenants.extend(self.inner.blocks.list_tenants(SIGNAL).await?);
        for t in tenants {
            self.block_list(&t, true).await?;
        }
        Ok(())
    }
}

fn take<T>(it: impl Iterator<Item = T>, limit: usize) -> Vec<T> {
    if limit == 0 {
        it.collect()
    } else {
        it.take(limit).collect()
    }
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Internal(format!("read {}: {e}", path.display()))
}

/// Per-tenant query limits (0 = unlimited).
#[derive(Clone, Copy, Debug, Default)]
struct QueryLimits {
    max_series: usize,
    max_samples: usize,
}

impl QueryLimits {
    fn series_error(&self, t: &TenantId, n: usize) -> Error {
        Error::Execution(format!(
            "the query hit the max number of series limit (limit max_series_per_query: {}) for tenant {t}: \
             it selects at least {n} series; narrow the selector or shorten the time range",
            self.max_series
        ))
    }

    fn check_series(&self, t: &TenantId, n: usize) -> Result<(), Error> {
        if self.max_series > 0 && n > self.max_series {
            return Err(self.series_error(t, n));
        }
        Ok(())
    }

    fn check_samples(&self, t: &TenantId, n: usize) -> Result<(), Error> {
        if self.max_samples > 0 && n > self.max_samples {
            return Err(Error::Execution(format!(
                "the query hit the max number of samples limit (limit max_samples_per_query: {}) for tenant {t}: \
                 it loads at least {n} samples; narrow the selector or shorten the time range",
                self.max_samples
            )));
        }
        Ok(())
    }
}

/// A [`SeriesSource`] bound to a tenant set, enforcing query limits.
struct TenantSource {
    store: MetricsStore,
    tenants: TenantSet,
}

#[async_trait::async_trait]
impl SeriesSource for TenantSource {
    async fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesData>, Error> {
        let fed = self.tenants.is_federated();
        let mut out = Vec::new();
        for t in self.tenants.tenants() {
            let Some(ms) = tenant_matchers(t, fed, matchers) else {
                continue;
            };
            let l = self.store.inner.overrides.get(t);
            let lim = QueryLimits {
                max_series: l.max_series_per_query,
                max_samples: l.max_samples_per_query,
            };
            let series = self
                .store
                .select_tenant(t, &ms, mint, maxt, Some(lim))
                .await?;
            // Exact checks on the merged result (the early ones count per source).
            lim.check_series(t, series.len())?;
            let samples: usize = series
                .iter()
                .map(|s| s.samples.len() + s.histograms.len())
                .sum();
            lim.check_samples(t, samples)?;
            out.extend(series.into_iter().map(|mut s| {
                s.labels = with_tenant(s.labels, t, fed);
                s
            }));
        }
        if fed {
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
