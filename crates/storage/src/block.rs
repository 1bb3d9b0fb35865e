//! Immutable blocks in an object store (local folder or S3-compatible), shared by every signal.
//!
//! A block is a folder `<prefix>/<tenant>/<signal>/<ULID>/` of signal-specific files plus `meta.json`,
//! which is written last and deleted first: it is the commit marker, so readers see a block either
//! whole or not at all, and folders without it are leftovers that [`BlockStore::gc_partial`] removes.
//! Readers only need an [`ObjectStore`], which keeps the seam for stateless queriers (design §8).
//!
//! Also here: the pure planning functions for retention ([`expired`]) and compaction
//! ([`plan_compaction`]); the signal crates do the actual merging.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::config::{Backend, StorageConfig};
use common::TenantId;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::Error;

/// Name of the commit marker of a block.
pub const META_FILE: &str = "meta.json";
/// How many objects one block operation reads or writes at once.
const CONCURRENCY: usize = 8;

/// What `meta.json` holds: enough to prune a block by tenant, signal and time before any other I/O.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BlockMeta {
    /// Block id; also its folder name.
    pub ulid: Ulid,
    /// Signal: `metrics`, `logs`, `traces` or `profiles`.
    pub signal: String,
    /// Format version of the signal's files.
    pub version: u32,
    /// Earliest timestamp in the block (the signal's unit; metrics: ms), inclusive.
    pub min_time: i64,
    /// Latest timestamp in the block (the signal's unit; metrics: ms), inclusive.
    pub max_time: i64,
    /// Compaction level, 1 = cut from the head.
    pub level: u32,
    /// Blocks this one was compacted from (empty for level 1).
    pub sources: Vec<Ulid>,
    /// Signal-specific counts, e.g. `{"series":..,"samples":..,"bytes":..}`.
    pub stats: serde_json::Value,
}

/// Blocks of all tenants and signals in one object store, under an optional key prefix. Cheap to clone.
#[derive(Clone)]
pub struct BlockStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// Set for the local-folder backend, whose `put` does not fsync: blocks are fsynced here before
    /// their `meta.json` commits them, because the WAL behind them is deleted once they are stored.
    local: Option<Arc<LocalDisk>>,
}

struct LocalDisk {
    fs: Arc<object_store::local::LocalFileSystem>,
    /// Canonical root folder.
    root: std::path::PathBuf,
}

impl std::fmt::Debug for BlockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockStore")
            .field("store", &self.store.to_string())
            .field("prefix", &self.prefix.as_ref())
            .finish()
    }
}

impl BlockStore {
    /// From config: `Backend::Filesystem` → a local folder at `path` or `<data_dir>/blocks` (created);
    /// `Backend::S3` → an S3-compatible bucket with endpoint/region/keys/allow_http/path-style from the
    /// config (unset keys and region fall back to the `AWS_*` environment), keys under `prefix`.
    pub fn from_config(cfg: &StorageConfig) -> Result<Self, Error> {
        let os = &cfg.object_store;
        match os.backend {
            Backend::Filesystem => {
                let dir = os
                    .path
                    .clone()
                    .unwrap_or_else(|| cfg.data_dir.join("blocks"));
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Error::io(format!("create block dir {}", dir.display()), e))?;
                let root = std::fs::canonicalize(&dir)
                    .map_err(|e| Error::io(format!("resolve block dir {}", dir.display()), e))?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(&root)
                    .map_err(|e| Error::ObjectStore {
                        context: format!("open block dir {}", dir.display()),
                        source: e,
                    })?
                    // Deleting a block's last file removes its folder too.
                    .with_automatic_cleanup(true);
                let fs = Arc::new(fs);
                let mut store = Self::new(fs.clone(), "");
                store.local = Some(Arc::new(LocalDisk { fs, root }));
                Ok(store)
            }
            Backend::S3 => {
                let s3 = &os.s3;
                if s3.bucket.is_empty() {
                    return Err(Error::Config(
                        "storage.object_store.s3.bucket is required".into(),
                    ));
                }
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(&s3.bucket)
                    .with_allow_http(s3.allow_http)
                    .with_virtual_hosted_style_request(!s3.path_style);
                if !s3.endpoint.is_empty() {
                    b = b.with_endpoint(&s3.endpoint);
                }
                if !s3.region.is_empty() {
                    b = b.with_region(&s3.region);
                }
                if let Some(k) = &s3.access_key_id {
                    b = b.with_access_key_id(k);
                }
                if let Some(k) = &s3.secret_access_key {
                    b = b.with_secret_access_key(k);
                }
                let store = b.build().map_err(|e| Error::ObjectStore {
                    context: format!(
                        "configure s3 bucket {:?} at endpoint {:?}",
                        s3.bucket, s3.endpoint
                    ),
                    source: e,
                })?;
                Ok(Self::new(Arc::new(store), &s3.prefix))
            }
        }
    }

    /// An in-memory store, for tests.
    pub fn in_memory() -> Self {
        Self::new(Arc::new(object_store::memory::InMemory::new()), "")
    }

    /// Blocks in `store` under the key prefix `prefix` (`""` for none; slashes separate levels).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        Self {
            store,
            prefix: Path::from(prefix.trim_matches('/')),
            local: None,
        }
    }

    /// The underlying object store, for readers that need more than this API.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Writes the files of a block then `meta.json` LAST (the commit marker: a block without it is
    /// invisible and garbage-collected). Path: `<prefix>/<tenant>/<signal>/<ulid>/<name>`.
    pub async fn put_block(
        &self,
        tenant: &TenantId,
        meta: &BlockMeta,
        files: Vec<(String, Bytes)>,
    ) -> Result<(), Error> {
        let dir = self.block_dir(tenant, &meta.signal, meta.ulid)?;
        let mut paths = Vec::with_capacity(files.len());
        for (name, data) in files {
            if name == META_FILE {
                return Err(Error::InvalidArgument(format!(
                    "block {} file list must not contain {META_FILE}; it is written from the meta",
                    meta.ulid
                )));
            }
            paths.push((file_path(&dir, &name)?, data));
        }
        let written: Vec<Path> = futures::stream::iter(paths)
            .map(|(path, data)| async move {
                self.store
                    .put(&path, PutPayload::from_bytes(data))
                    .await
                    .map_err(|e| Error::store("put", &path, e))?;
                Ok::<_, Error>(path)
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        self.sync_local(written).await?;
        let meta_path = dir.child(META_FILE);
        let json = serde_json::to_vec_pretty(meta).map_err(|e| Error::InvalidMeta {
            path: meta_path.to_string(),
            source: e,
        })?;
        self.store
            .put(&meta_path, PutPayload::from(json))
            .await
            .map_err(|e| Error::store("put", &meta_path, e))?;
        self.sync_local(vec![meta_path]).await
    }

    /// With the local backend, fsyncs `paths` and every folder from theirs up to the root.
    async fn sync_local(&self, paths: Vec<Path>) -> Result<(), Error> {
        let Some(local) = self.local.clone() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || {
            let mut dirs = std::collections::BTreeSet::new();
            for p in &paths {
                let file = local
                    .fs
                    .path_to_filesystem(p)
                    .map_err(|e| Error::store("resolve", p, e))?;
                std::fs::File::open(&file)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| Error::io(format!("fsync block file {}", file.display()), e))?;
                let mut dir = file.parent();
                while let Some(d) = dir.filter(|d| d.starts_with(&local.root)) {
                    if !dirs.insert(d.to_path_buf()) {
                        break;
                    }
                    dir = d.parent();
                }
            }
            for d in dirs.iter().rev() {
                std::fs::File::open(d)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| Error::io(format!("fsync block folder {}", d.display()), e))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::io("fsync block files", std::io::Error::other(e)))?
    }

    /// Metas of all committed blocks of a tenant's signal, sorted by (min_time, ulid). Folders without
    /// `meta.json` are skipped; an unreadable `meta.json` is an error.
    pub async fn list_blocks(
        &self,
        tenant: &TenantId,
        signal: &str,
    ) -> Result<Vec<BlockMeta>, Error> {
        let groups = self.scan_blocks(tenant, signal).await?;
        let committed: Vec<Ulid> = groups
            .into_iter()
            .filter(|(_, g)| g.committed)
            .map(|(id, _)| id)
            .collect();
        let mut metas: Vec<BlockMeta> = futures::stream::iter(committed)
            .map(|id| self.read_meta(tenant, signal, id))
            .buffer_unordered(CONCURRENCY)
            .try_filter_map(|m| async move { Ok(m) })
            .try_collect()
            .await?;
        metas.sort_by_key(|a| (a.min_time, a.ulid));
        Ok(metas)
    }

    /// All tenants that have any committed block of `signal` (folder names that are not valid tenant
    /// ids are skipped), sorted.
    pub async fn list_tenants(&self, signal: &str) -> Result<Vec<TenantId>, Error> {
        check_component("signal", signal)?;
        let root = self.root();
        let listing = self
            .store
            .list_with_delimiter(root.as_ref())
            .await
            .map_err(|e| Error::store("list", &self.prefix, e))?;
        let mut tenants = Vec::new();
        for dir in listing.common_prefixes {
            let Some(raw) = dir.filename() else { continue };
            let Ok(tenant) = TenantId::new(&percent_decode(raw)) else {
                continue;
            };
            let sig = dir.child(signal);
            let mut objects = self.store.list(Some(&sig));
            while let Some(obj) = objects.next().await {
                let obj = obj.map_err(|e| Error::store("list", &sig, e))?;
                if obj.location.filename() == Some(META_FILE) {
                    tenants.push(tenant);
                    break;
                }
            }
        }
        tenants.sort();
        Ok(tenants)
    }

    /// One whole file of a block.
    pub async fn get(
        &self,
        tenant: &TenantId,
        signal: &str,
        ulid: Ulid,
        name: &str,
    ) -> Result<Bytes, Error> {
        let path = file_path(&self.block_dir(tenant, signal, ulid)?, name)?;
        let got = self
            .store
            .get(&path)
            .await
            .map_err(|e| Error::store("get", &path, e))?;
        got.bytes()
            .await
            .map_err(|e| Error::store("read", &path, e))
    }

    /// The bytes `range` of one file of a block.
    pub async fn get_range(
        &self,
        tenant: &TenantId,
        signal: &str,
        ulid: Ulid,
        name: &str,
        range: Range<u64>,
    ) -> Result<Bytes, Error> {
        let path = file_path(&self.block_dir(tenant, signal, ulid)?, name)?;
        self.store
            .get_range(&path, range.clone())
            .await
            .map_err(|e| {
                Error::store(
                    format!("get bytes {}..{} of", range.start, range.end),
                    &path,
                    e,
                )
            })
    }

    /// The meta of one committed block ([`Error::NotFound`] when it has no `meta.json`).
    pub async fn get_meta(
        &self,
        tenant: &TenantId,
        signal: &str,
        ulid: Ulid,
    ) -> Result<BlockMeta, Error> {
        match self.read_meta(tenant, signal, ulid).await? {
            Some(meta) => Ok(meta),
            None => Err(Error::NotFound {
                path: self
                    .block_dir(tenant, signal, ulid)?
                    .child(META_FILE)
                    .to_string(),
            }),
        }
    }

    /// Deletes `meta.json` first (the block disappears atomically for readers), then the other files.
    /// Deleting a block that does not exist is not an error.
    pub async fn delete_block(
        &self,
        tenant: &TenantId,
        signal: &str,
        ulid: Ulid,
    ) -> Result<(), Error> {
        let dir = self.block_dir(tenant, signal, ulid)?;
        let meta = dir.child(META_FILE);
        match self.store.delete(&meta).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::store("delete", &meta, e)),
        }
        self.delete_all_under(&dir).await
    }

    /// Deletes the files of uncommitted blocks (no `meta.json`) whose newest file is older than
    /// `min_age`; returns how many blocks were removed. `min_age` must exceed the longest upload.
    pub async fn gc_partial(
        &self,
        tenant: &TenantId,
        signal: &str,
        min_age: Duration,
    ) -> Result<usize, Error> {
        let groups = self.scan_blocks(tenant, signal).await?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let cutoff = now_ms - min_age.as_millis() as i64;
        let mut removed = 0;
        for (id, g) in groups {
            if g.committed || g.newest_ms >= cutoff {
                continue;
            }
            tracing::info!(tenant = %tenant, signal, block = %id, "deleting uncommitted block");
            self.delete_all_under(&self.block_dir(tenant, signal, id)?)
                .await?;
            removed += 1;
        }
        Ok(removed)
    }

    fn root(&self) -> Option<Path> {
        if self.prefix.as_ref().is_empty() {
            None
        } else {
            Some(self.prefix.clone())
        }
    }

    fn signal_dir(&self, tenant: &TenantId, signal: &str) -> Result<Path, Error> {
        check_component("signal", signal)?;
        Ok(self.prefix.child(tenant.as_str()).child(signal))
    }

    fn block_dir(&self, tenant: &TenantId, signal: &str, ulid: Ulid) -> Result<Path, Error> {
        Ok(self.signal_dir(tenant, signal)?.child(ulid.to_string()))
    }

    /// Every block folder of a tenant's signal, with whether it is committed and its newest file time.
    async fn scan_blocks(
        &self,
        tenant: &TenantId,
        signal: &str,
    ) -> Result<BTreeMap<Ulid, Folder>, Error> {
        let dir = self.signal_dir(tenant, signal)?;
        let depth = dir.parts().count();
        let mut objects = self.store.list(Some(&dir));
        let mut groups: BTreeMap<Ulid, Folder> = BTreeMap::new();
        while let Some(obj) = objects.next().await {
            let obj = obj.map_err(|e| Error::store("list", &dir, e))?;
            let mut parts = obj.location.parts().skip(depth);
            let Some(id) = parts
                .next()
                .and_then(|p| Ulid::from_string(p.as_ref()).ok())
            else {
                continue;
            };
            let Some(first) = parts.next() else { continue };
            let is_meta = first.as_ref() == META_FILE && parts.next().is_none();
            let g = groups.entry(id).or_default();
            g.committed |= is_meta;
            g.newest_ms = g.newest_ms.max(obj.last_modified.timestamp_millis());
        }
        Ok(groups)
    }

    async fn read_meta(
        &self,
        tenant: &TenantId,
        signal: &str,
        id: Ulid,
    ) -> Result<Option<BlockMeta>, Error> {
        let path = self.block_dir(tenant, signal, id)?.child(META_FILE);
        let bytes = match self.store.get(&path).await {
            Ok(got) => got
                .bytes()
                .await
                .map_err(|e| Error::store("read", &path, e))?,
            // Deleted between listing and reading.
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(Error::store("get", &path, e)),
        };
        let meta: BlockMeta = serde_json::from_slice(&bytes).map_err(|e| Error::InvalidMeta {
            path: path.to_string(),
            source: e,
        })?;
        if meta.ulid != id || meta.signal != signal {
            tracing::warn!(path = %path, ulid = %meta.ulid, signal = %meta.signal, "block meta does not match its folder, skipping");
            return Ok(None);
        }
        Ok(Some(meta))
    }

    async fn delete_all_under(&self, dir: &Path) -> Result<(), Error> {
        let locations = self.store.list(Some(dir)).map_ok(|m| m.location).boxed();
        self.store
            .delete_stream(locations)
            .or_else(|e| async move {
                match e {
                    object_store::Error::NotFound { .. } => Ok(Path::default()),
                    e => Err(e),
                }
            })
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| Error::store("delete under", dir, e))?;
        Ok(())
    }
}

#[derive(Default)]
struct Folder {
    committed: bool,
    newest_ms: i64,
}

/// Rejects names that would escape or confuse the layout.
fn check_component(what: &str, s: &str) -> Result<(), Error> {
    if s.is_empty() || s == "." || s == ".." || s.contains('/') {
        return Err(Error::InvalidArgument(format!(
            "{what} {s:?} must be a non-empty name without '/' and not '.' or '..'"
        )));
    }
    Ok(())
}

/// `name` may contain `/` for sub-folders inside the block; each level is checked.
fn file_path(dir: &Path, name: &str) -> Result<Path, Error> {
    let mut path = dir.clone();
    for part in name.split('/') {
        check_component("block file name", part)?;
        path = path.child(part);
    }
    Ok(path)
}

/// Undoes the percent-encoding `object_store` applies to path parts (e.g. `*` in tenant ids).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or(""), 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Blocks entirely older than `now_ms - retention_ms` (by `max_time`); the caller deletes them.
pub fn expired(blocks: &[BlockMeta], now_ms: i64, retention_ms: i64) -> Vec<Ulid> {
    let cutoff = now_ms.saturating_sub(retention_ms);
    blocks
        .iter()
        .filter(|b| b.max_time < cutoff)
        .map(|b| b.ulid)
        .collect()
}

/// Compaction candidates: groups of adjacent blocks that together fit in one aligned window of
/// `ranges[i]` ms (e.g. `[2h, 6h, 24h]`: 3 × 2h → 6h, then 4 × 6h → 24h). Level-`i` blocks (and
/// stragglers of lower levels) are grouped into `ranges[i]` windows; each group has ≥ 2 blocks, none
/// overlapping, and every block is in at most one group (smaller ranges first).
///
/// A window is planned only once it is finished: its blocks cover it end to end, or some block
/// starts after it (time has moved on), so that a window is not compacted while blocks still arrive.
/// Overlapping blocks and blocks that straddle a window boundary are left out of groups (they need a
/// vertical merge, which is not planned here). Groups are sorted by time; give the merged block level
/// `max(level) + 1` and the group's ulids as `sources`.
pub fn plan_compaction(blocks: &[BlockMeta], ranges: &[i64]) -> Vec<Vec<BlockMeta>> {
    let newest_start = blocks.iter().map(|b| b.min_time).max();
    let mut used = std::collections::HashSet::new();
    let mut plans = Vec::new();
    for (i, &range) in ranges.iter().enumerate().skip(1) {
        if range <= 0 {
            continue;
        }
        let level = i as u32;
        let mut windows: BTreeMap<i64, Vec<&BlockMeta>> = BTreeMap::new();
        for b in blocks {
            if b.level > level || b.level == 0 || used.contains(&b.ulid) || b.max_time < b.min_time
            {
                continue;
            }
            let start = b.min_time.div_euclid(range) * range;
            // Inclusive max_time: the block must end before the next window starts.
            if b.max_time >= start.saturating_add(range) {
                continue;
            }
            windows.entry(start).or_default().push(b);
        }
        for (start, mut group) in windows {
            group.sort_by_key(|a| (a.min_time, a.ulid));
            let mut chain: Vec<&BlockMeta> = Vec::with_capacity(group.len());
            for b in group {
                match chain.last() {
                    Some(prev) if b.min_time <= prev.max_time => {}
                    _ => chain.push(b),
                }
            }
            if chain.len() < 2 {
                continue;
            }
            let end = start + range; // exclusive
            let covered = chain[0].min_time == start
                && chain.last().map(|b| b.max_time) == Some(end - 1)
                && chain
                    .windows(2)
                    .all(|w| w[0].max_time.checked_add(1) == Some(w[1].min_time));
            let moved_on = newest_start.is_some_and(|t| t >= end);
            if !(covered || moved_on) {
                continue;
            }
            used.extend(chain.iter().map(|b| b.ulid));
            plans.push(chain.into_iter().cloned().collect());
        }
    }
    plans
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::config::{ObjectStoreConfig, S3Config};

    const H: i64 = 3_600_000;

    fn meta(signal: &str, min_time: i64, max_time: i64, level: u32) -> BlockMeta {
        BlockMeta {
            ulid: Ulid::new(),
            signal: signal.into(),
            version: 1,
            min_time,
            max_time,
            level,
            sources: Vec::new(),
            stats: serde_json::json!({"series": 2, "samples": 10}),
        }
    }

    fn tenant(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    /// The same checks for every backend.
    async fn conformance(store: BlockStore) {
        let a = tenant("team-a");
        // Characters object_store percent-encodes must round-trip through listings.
        let odd = tenant("(odd)*'!");
        let m1 = meta("metrics", 2 * H, 3 * H - 1, 1);
        let m0 = meta("metrics", 0, H - 1, 1);
        let files = vec![
            ("index".to_string(), Bytes::from_static(b"0123456789")),
            (
                "chunks/000001".to_string(),
                Bytes::from_static(b"chunk-data"),
            ),
        ];
        store.put_block(&a, &m1, files.clone()).await.unwrap();
        store.put_block(&a, &m0, files.clone()).await.unwrap();
        store.put_block(&odd, &m0, files.clone()).await.unwrap();
        let logs = meta("logs", 0, 10, 1);
        store.put_block(&a, &logs, vec![]).await.unwrap();

        assert_eq!(
            store.list_blocks(&a, "metrics").await.unwrap(),
            vec![m0.clone(), m1.clone()]
        );
        assert_eq!(
            store.list_blocks(&a, "logs").await.unwrap(),
            vec![logs.clone()]
        );
        assert_eq!(
            store.list_blocks(&odd, "metrics").await.unwrap(),
            vec![m0.clone()]
        );
        assert!(store
            .list_blocks(&tenant("nobody"), "metrics")
            .await
            .unwrap()
            .is_empty());
        assert!(store.list_blocks(&odd, "traces").await.unwrap().is_empty());

        assert_eq!(
            store.get(&a, "metrics", m1.ulid, "index").await.unwrap(),
            Bytes::from_static(b"0123456789")
        );
        assert_eq!(
            store
                .get(&a, "metrics", m1.ulid, "chunks/000001")
                .await
                .unwrap(),
            Bytes::from_static(b"chunk-data")
        );
        assert_eq!(
            store
                .get_range(&a, "metrics", m1.ulid, "index", 2..5)
                .await
                .unwrap(),
            Bytes::from_static(b"234")
        );
        let missing = store.get(&a, "metrics", m1.ulid, "nope").await.unwrap_err();
        assert!(missing.is_not_found(), "{missing}");
        assert!(missing.to_string().contains("nope"), "{missing}");
        let meta_json = store.get(&a, "metrics", m1.ulid, META_FILE).await.unwrap();
        let parsed: BlockMeta = serde_json::from_slice(&meta_json).unwrap();
        assert_eq!(parsed, m1);
        assert_eq!(store.get_meta(&a, "metrics", m1.ulid).await.unwrap(), m1);
        assert!(store
            .get_meta(&a, "logs", m1.ulid)
            .await
            .unwrap_err()
            .is_not_found());

        // Bad names are rejected.
        assert!(store.get(&a, "metrics", m1.ulid, "../x").await.is_err());
        assert!(store.list_blocks(&a, "a/b").await.is_err());
        let with_meta = vec![(META_FILE.to_string(), Bytes::new())];
        assert!(store
            .put_block(&a, &meta("metrics", 0, 1, 1), with_meta)
            .await
            .is_err());

        assert_eq!(
            store.list_tenants("metrics").await.unwrap(),
            vec![odd.clone(), a.clone()]
        );
        assert_eq!(store.list_tenants("logs").await.unwrap(), vec![a.clone()]);
        assert!(store.list_tenants("traces").await.unwrap().is_empty());

        // An uncommitted block: files but no meta.json.
        let partial = meta("metrics", 5 * H, 6 * H, 1);
        let dir = store.block_dir(&a, "metrics", partial.ulid).unwrap();
        store
            .object_store()
            .put(&dir.child("index"), PutPayload::from_static(b"half"))
            .await
            .unwrap();
        assert_eq!(store.list_blocks(&a, "metrics").await.unwrap().len(), 2);
        // A tenant with only uncommitted blocks is not listed.
        let ghost = tenant("ghost");
        let gdir = store.block_dir(&ghost, "metrics", Ulid::new()).unwrap();
        store
            .object_store()
            .put(&gdir.child("index"), PutPayload::from_static(b"half"))
            .await
            .unwrap();
        assert_eq!(
            store.list_tenants("metrics").await.unwrap(),
            vec![odd.clone(), a.clone()]
        );

        assert_eq!(
            store
                .gc_partial(&a, "metrics", Duration::from_secs(3600))
                .await
                .unwrap(),
            0
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            store
                .gc_partial(&a, "metrics", Duration::from_millis(1))
                .await
                .unwrap(),
            1
        );
        assert!(store
            .get(&a, "metrics", partial.ulid, "index")
            .await
            .unwrap_err()
            .is_not_found());
        assert_eq!(store.list_blocks(&a, "metrics").await.unwrap().len(), 2);
        assert_eq!(
            store
                .gc_partial(&a, "metrics", Duration::ZERO)
                .await
                .unwrap(),
            0
        );

        store.delete_block(&a, "metrics", m0.ulid).await.unwrap();
        assert_eq!(
            store.list_blocks(&a, "metrics").await.unwrap(),
            vec![m1.clone()]
        );
        assert!(store
            .get(&a, "metrics", m0.ulid, "index")
            .await
            .unwrap_err()
            .is_not_found());
        assert_eq!(
            store
                .gc_partial(&a, "metrics", Duration::ZERO)
                .await
                .unwrap(),
            0
        );
        // Idempotent.
        store.delete_block(&a, "metrics", m0.ulid).await.unwrap();
        // The other tenant's copy is untouched.
        assert_eq!(
            store.list_blocks(&odd, "metrics").await.unwrap(),
            vec![m0.clone()]
        );
        store.delete_block(&a, "logs", logs.ulid).await.unwrap();
        assert_eq!(
            store.list_tenants("logs").await.unwrap(),
            Vec::<TenantId>::new()
        );
    }

    #[tokio::test]
    async fn in_memory_store() {
        conformance(BlockStore::in_memory()).await;
    }

    #[tokio::test]
    async fn local_filesystem_store() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = StorageConfig {
            data_dir: tmp.path().to_path_buf(),
            ..StorageConfig::default()
        };
        let store = BlockStore::from_config(&cfg).unwrap();
        assert!(tmp.path().join("blocks").is_dir());
        conformance(store.clone()).await;
        // Deleted blocks leave no folders behind.
        let a_metrics = tmp.path().join("blocks/team-a/metrics");
        assert_eq!(std::fs::read_dir(&a_metrics).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn prefixed_store() {
        let tmp = tempfile::tempdir().unwrap();
        let fs = object_store::local::LocalFileSystem::new_with_prefix(tmp.path()).unwrap();
        let store = BlockStore::new(Arc::new(fs), "/cluster-1/blocks/");
        let m = meta("metrics", 0, 1, 1);
        store
            .put_block(
                &tenant("t"),
                &m,
                vec![("x".into(), Bytes::from_static(b"1"))],
            )
            .await
            .unwrap();
        assert!(tmp
            .path()
            .join(format!("cluster-1/blocks/t/metrics/{}/meta.json", m.ulid))
            .is_file());
        assert_eq!(
            store.list_tenants("metrics").await.unwrap(),
            vec![tenant("t")]
        );
        assert_eq!(
            store.list_blocks(&tenant("t"), "metrics").await.unwrap(),
            vec![m]
        );
        conformance(BlockStore::new(store.object_store().clone(), "other")).await;
    }

    #[test]
    fn s3_from_config() {
        let mut cfg = StorageConfig {
            object_store: ObjectStoreConfig {
                backend: Backend::S3,
                path: None,
                s3: S3Config {
                    bucket: "heimdall".into(),
                    endpoint: "http://127.0.0.1:9000".into(),
                    region: "eu-west-1".into(),
                    access_key_id: Some("key".into()),
                    secret_access_key: Some("secret".into()),
                    allow_http: true,
                    path_style: true,
                    prefix: "/prod/".into(),
                },
            },
            ..StorageConfig::default()
        };
        let store = BlockStore::from_config(&cfg).unwrap();
        assert_eq!(store.prefix.as_ref(), "prod");
        let shown = store.object_store().to_string();
        assert!(shown.contains("heimdall"), "{shown}");
        cfg.object_store.s3.bucket.clear();
        assert!(matches!(
            BlockStore::from_config(&cfg),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Ab"), "a*b");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("a%zzb"), "a%zzb");
    }

    #[test]
    fn expired_blocks() {
        let old = meta("metrics", 0, 999, 1);
        let edge = meta("metrics", 500, 1000, 1);
        let new = meta("metrics", 1000, 2000, 1);
        let blocks = vec![old.clone(), edge.clone(), new];
        // Cutoff 1000: only blocks whose last sample is before it.
        assert_eq!(expired(&blocks, 1500, 500), vec![old.ulid]);
        assert_eq!(expired(&blocks, 1501, 500), vec![old.ulid, edge.ulid]);
        assert!(expired(&blocks, 0, 7 * 24 * H).is_empty());
    }

    fn ids(groups: &[Vec<BlockMeta>]) -> Vec<Vec<Ulid>> {
        groups
            .iter()
            .map(|g| g.iter().map(|b| b.ulid).collect())
            .collect()
    }

    #[test]
    fn compaction_groups_finished_windows() {
        let ranges = [2 * H, 6 * H, 24 * H];
        // Two full 6h windows of 2h blocks, and a third window still being filled.
        let mut blocks: Vec<BlockMeta> = (0..8)
            .map(|i| meta("metrics", i * 2 * H, (i + 1) * 2 * H - 1, 1))
            .collect();
        blocks.reverse(); // Input order does not matter.
        let plans = plan_compaction(&blocks, &ranges);
        blocks.reverse();
        assert_eq!(
            ids(&plans),
            vec![
                blocks[0..3].iter().map(|b| b.ulid).collect::<Vec<_>>(),
                blocks[3..6].iter().map(|b| b.ulid).collect::<Vec<_>>(),
            ]
        );
        // Each group is sorted by time.
        assert!(plans[0].windows(2).all(|w| w[0].max_time < w[1].min_time));

        // The open window (12h..18h, 2 of 3 blocks so far) becomes eligible once covered.
        let mut full = blocks.clone();
        full.push(meta("metrics", 16 * H, 18 * H - 1, 1));
        let plans = plan_compaction(&full, &ranges);
        assert_eq!(plans.len(), 3);
        assert_eq!(plans[2].len(), 3);

        // Partial blocks of a window are compacted once time has moved on past it.
        let sparse = vec![
            meta("metrics", 10, 20, 1),
            meta("metrics", H, H + 5, 1),
            meta("metrics", 6 * H + 1, 6 * H + 2, 1),
        ];
        assert_eq!(
            ids(&plan_compaction(&sparse, &ranges)),
            vec![vec![sparse[0].ulid, sparse[1].ulid]]
        );
        // Not before.
        assert!(plan_compaction(&sparse[0..2], &ranges).is_empty());
    }

    #[test]
    fn compaction_second_level() {
        let ranges = [2 * H, 6 * H, 24 * H];
        let mut blocks: Vec<BlockMeta> = (0..4)
            .map(|i| meta("metrics", i * 6 * H, (i + 1) * 6 * H - 1, 2))
            .collect();
        // A next-day block moves time on.
        blocks.push(meta("metrics", 24 * H, 26 * H - 1, 1));
        let plans = plan_compaction(&blocks, &ranges);
        assert_eq!(
            ids(&plans),
            vec![blocks[0..4].iter().map(|b| b.ulid).collect::<Vec<_>>()]
        );
        // A lone level-1 straggler joins the level-2 blocks of its day.
        let straggler = meta("metrics", 18 * H, 19 * H, 1);
        let mut with = blocks[0..3].to_vec();
        with.push(straggler.clone());
        with.push(blocks[4].clone());
        let plans = plan_compaction(&with, &ranges);
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0].len(), 4);
        assert_eq!(plans[0][3].ulid, straggler.ulid);
        // Blocks already spanning the largest range are left alone.
        let day = vec![
            meta("metrics", 0, 24 * H - 1, 3),
            meta("metrics", 24 * H, 48 * H - 1, 3),
            meta("metrics", 72 * H, 73 * H, 1),
        ];
        assert!(plan_compaction(&day, &ranges).is_empty());
    }

    #[test]
    fn compaction_skips_overlaps_and_straddlers() {
        let ranges = [2 * H, 6 * H];
        let a = meta("metrics", 0, 2 * H - 1, 1);
        let overlapping = meta("metrics", H, 3 * H, 1);
        let b = meta("metrics", 4 * H, 5 * H, 1);
        let straddler = meta("metrics", 5 * H, 7 * H, 1);
        let later = meta("metrics", 12 * H, 13 * H, 1);
        let blocks = vec![a.clone(), overlapping, b.clone(), straddler, later];
        assert_eq!(
            ids(&plan_compaction(&blocks, &ranges)),
            vec![vec![a.ulid, b.ulid]]
        );
        // A single range or no blocks: nothing to do.
        assert!(plan_compaction(&blocks, &ranges[..1]).is_empty());
        assert!(plan_compaction(&[], &ranges).is_empty());
    }
}
