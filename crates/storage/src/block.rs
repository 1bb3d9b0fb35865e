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
                let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| Error::ObjectStore {
                        context: format!("open block dir {}", dir.display()),
                        source: e,
                    })?
                    // Deleting a block's last file removes its folder too.
                    .with_automatic_cleanup(true);
                Ok(Self::new(Arc::new(fs), ""))
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
        futures::stream::iter(paths)
            .map(|(path, data)| async move {
                self.store
                    .put(&path, PutPayload::from_bytes(data))
                    .await
                    .map_err(|e| Error::store("put", &path, e))
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        let meta_path = dir.child(META_FILE);
        let json = serde_json::to_vec_pretty(meta).map_err(|e| Error::InvalidMeta {
            path: meta_path.to_string(),
            source: e,
        })?;
        self.store
            .put(&meta_path, PutPayload::from(json))
            .await
            .map_err(|e| Error::store("put", &meta_path, e))?;
        Ok(())
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
/// Overlapping blocks are left out of groups (they need a vertical merge, which is not planned here).
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
                && chain.windows(2).all(|w| w[1].min_time == w[0].max_time + 1);
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
