//! The in-memory head of one tenant: the most recent samples, rebuilt from the WAL on start.
//!
//! Memory layout (the benchmark target is ≤ 1 KiB per active series):
//! - label strings are interned once per tenant ([`Symbols`]); a series keeps its labels as a boxed
//!   slice of `u32` symbol pairs (8 bytes per label instead of two heap `String`s);
//! - series live inline in per-shard `Vec`s (no `Box`/`Arc`/lock per series), addressed by
//!   `id = slot * SHARDS + shard`, so an id leads to its shard without a lookup table;
//! - samples go into a Gorilla XOR chunk (~1–2 bytes/sample), sealed every 120 samples into an
//!   exactly-sized boxed slice; out-of-order samples, histograms and exemplars, which most series
//!   never have, sit behind one optional box.
//!
//! Concurrency: `SHARDS` mutexes chosen by label hash, so parallel writers rarely meet; the symbol
//! table and postings are only write-locked when a series is created or dropped. Lock order is
//! symbols → postings → shard, everywhere.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use common::limits::Limits;
use common::{Label, Labels, Matcher, TenantId};
use parking_lot::{Mutex, RwLock};

use super::encoding::{chunk_decode, pack_chunk, HeadChunk};
use super::postings::{Postings, Symbols};
use super::record::{self, WalBatch};
use super::WriteOutcome;
use crate::model::{
    raw_labels, Exemplar, HistogramSample, Metadata, RawWrite, Sample, SeriesData, WriteBatch,
};
use crate::Error;

/// Number of lock shards (a power of two). 32 keeps contention negligible on small machines while the
/// per-shard overhead (a few hash maps) stays tiny.
pub(crate) const SHARDS: usize = 32;
/// Samples per sealed chunk (as Prometheus): long enough to amortise the chunk header, short enough
/// that a query decodes little beyond its range.
const CHUNK_SAMPLES: usize = 120;
/// Exemplars kept per series (a ring; older ones are dropped).
pub(crate) const MAX_EXEMPLARS: usize = 10;
/// How many rejection messages a write reports (the count covers all).
const MAX_MESSAGES: usize = 5;

/// A full chunk: immutable, exactly sized.
struct SealedChunk {
    mint: i64,
    maxt: i64,
    n: u16,
    data: Box<[u8]>,
}

/// Rarely used per-series state, kept out of line.
#[derive(Default)]
struct Extra {
    /// Accepted out-of-order float samples, sorted by time, none equal to an in-order timestamp.
    ooo: Vec<Sample>,
    /// Native histogram samples, sorted by time.
    hists: Vec<HistogramSample>,
    /// Latest exemplars.
    exemplars: VecDeque<Exemplar>,
}

pub(crate) struct MemSeries {
    /// Label (name, value) symbol pairs in name order; empty marks a free slot.
    labels: Box<[u32]>,
    sealed: Vec<SealedChunk>,
    open: HeadChunk,
    /// Newest in-order float sample (`i64::MIN` when none) and its value bits.
    last_t: i64,
    last_v: u64,
    /// Decimal scale of the series' last decimal chunk (see `HeadChunk::try_append`).
    scale_hint: u8,
    /// Time range over all data of the series (floats, out-of-order, histograms).
    min_t: i64,
    max_t: i64,
    extra: Option<Box<Extra>>,
}

/// Why a sample was not written.
#[derive(Clone, Copy)]
enum Reject {
    OutOfOrder { last: i64 },
    Duplicate,
    OutOfBounds,
}

impl MemSeries {
    fn new(labels: Box<[u32]>) -> Self {
        Self {
            labels,
            sealed: Vec::new(),
            open: HeadChunk::default(),
            last_t: i64::MIN,
            last_v: 0,
            scale_hint: 0,
            min_t: i64::MAX,
            max_t: i64::MIN,
            extra: None,
        }
    }

    fn is_free(&self) -> bool {
        self.labels.is_empty()
    }

    fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Default::default)
    }

    fn float_count(&self) -> usize {
        self.sealed.iter().map(|c| usize::from(c.n)).sum::<usize>()
            + self.open.len()
            + self.extra.as_ref().map_or(0, |e| e.ooo.len())
    }

    fn touch(&mut self, t: i64) {
        self.min_t = self.min_t.min(t);
        self.max_t = self.max_t.max(t);
    }

    fn push_in_order(&mut self, t: i64, v: f64) {
        if !self.open.try_append(self.last_t, t, v, self.scale_hint) {
            // The value does not fit the open decimal chunk: seal it early; the new chunk's mode
            // follows this sample.
            self.seal();
            let ok = self.open.try_append(self.last_t, t, v, self.scale_hint);
            debug_assert!(ok, "an empty chunk takes any sample");
        }
        if let Some(s) = self.open.scale() {
            self.scale_hint = s;
        }
        self.last_t = t;
        self.last_v = v.to_bits();
        self.touch(t);
        if self.open.len() >= CHUNK_SAMPLES {
            self.seal();
        }
    }

    fn seal(&mut self) {
        if self.open.len() == 0 {
            return;
        }
        let full = std::mem::take(&mut self.open);
        let n = full.len();
        let mut data = None;
        if full.scale().is_some() {
            let mut samples = Vec::with_capacity(n);
            if chunk_decode(full.bytes(), n, i64::MIN, i64::MAX, &mut samples).is_ok() {
                data = pack_chunk(&samples)
                    .filter(|p| p.len() < full.bytes().len())
                    .map(Vec::into_boxed_slice);
            }
        }
        grow_exact(&mut self.sealed);
        self.sealed.push(SealedChunk {
            mint: full.first_t().unwrap_or(self.last_t),
            maxt: self.last_t,
            n: n as u16,
            data: data.unwrap_or_else(|| full.into_bytes()),
        });
    }

    /// The value bits at exactly `t`, if the series has a float sample there (slow path: decodes).
    fn find(&self, t: i64) -> Option<u64> {
        if let Some(e) = &self.extra {
            if let Ok(i) = e.ooo.binary_search_by_key(&t, |s| s.t) {
                return Some(e.ooo[i].v.to_bits());
            }
        }
        let mut out = Vec::new();
        for c in self.sealed.iter().filter(|c| c.mint <= t && t <= c.maxt) {
            let _ = chunk_decode(&c.data, usize::from(c.n), t, t, &mut out);
        }
        if self.open.first_t().is_some_and(|m| m <= t) && t <= self.last_t {
            let _ = chunk_decode(self.open.bytes(), self.open.len(), t, t, &mut out);
        }
        out.first().map(|s| s.v.to_bits())
    }

    /// Validating append of a float sample: `Ok(true)` written, `Ok(false)` ignored exact duplicate.
    fn append_float(&mut self, s: Sample, ooo_window: i64) -> Result<bool, Reject> {
        if s.t > self.last_t {
            self.push_in_order(s.t, s.v);
            return Ok(true);
        }
        if s.t == self.last_t {
            return if s.v.to_bits() == self.last_v {
                Ok(false)
            } else {
                Err(Reject::Duplicate)
            };
        }
        if ooo_window <= 0 || s.t < self.last_t.saturating_sub(ooo_window) {
            return Err(Reject::OutOfOrder { last: self.last_t });
        }
        self.insert_ooo(s)
    }

    fn insert_ooo(&mut self, s: Sample) -> Result<bool, Reject> {
        if let Some(bits) = self.find(s.t) {
            return if bits == s.v.to_bits() {
                Ok(false)
            } else {
                Err(Reject::Duplicate)
            };
        }
        let ooo = &mut self.extra().ooo;
        let i = ooo.partition_point(|x| x.t < s.t);
        ooo.insert(i, s);
        self.touch(s.t);
        Ok(true)
    }

    /// Histogram append with the same ordering rules as floats (histograms have their own timeline).
    fn append_histogram(
        &mut self,
        h: HistogramSample,
        ooo_window: i64,
        lenient: bool,
    ) -> Result<bool, Reject> {
        let t = h.t;
        let hists = &mut self.extra().hists;
        match hists.last() {
            None => hists.push(h),
            Some(last) if t > last.t => hists.push(h),
            Some(last) => {
                let last_t = last.t;
                let i = hists.partition_point(|x| x.t < t);
                if i < hists.len() && hists[i].t == t {
                    return if lenient || hists[i].h == h.h {
                        Ok(false)
                    } else {
                        Err(Reject::Duplicate)
                    };
                }
                if !lenient && (ooo_window <= 0 || t < last_t.saturating_sub(ooo_window)) {
                    return Err(Reject::OutOfOrder { last: last_t });
                }
                hists.insert(i, h);
            }
        }
        self.touch(t);
        Ok(true)
    }

    fn add_exemplar(&mut self, e: Exemplar) -> bool {
        let ring = &mut self.extra().exemplars;
        if let Some(last) = ring.back() {
            // Prometheus drops repeats and out-of-order exemplars; they are not worth failing a write.
            if e.t < last.t
                || (e.t == last.t
                    && e.value.to_bits() == last.value.to_bits()
                    && e.labels == last.labels)
            {
                return false;
            }
        }
        if ring.len() >= MAX_EXEMPLARS {
            ring.pop_front();
        }
        ring.push_back(e);
        true
    }

    /// Float samples in `[mint, maxt]`, sorted.
    fn floats(&self, mint: i64, maxt: i64, out: &mut Vec<Sample>) {
        let start = out.len();
        for c in self
            .sealed
            .iter()
            .filter(|c| c.maxt >= mint && c.mint <= maxt)
        {
            // Our own bytes: decoding cannot fail short of memory corruption.
            let _ = chunk_decode(&c.data, usize::from(c.n), mint, maxt, out);
        }
        if self.last_t >= mint && self.open.first_t().is_some_and(|m| m <= maxt) {
            let _ = chunk_decode(self.open.bytes(), self.open.len(), mint, maxt, out);
        }
        if let Some(e) = &self.extra {
            let lo = e.ooo.partition_point(|s| s.t < mint);
            let hi = e.ooo.partition_point(|s| s.t <= maxt);
            if lo < hi {
                out.extend_from_slice(&e.ooo[lo..hi]);
                out[start..].sort_by_key(|s| s.t);
            }
        }
    }

    fn histograms(&self, mint: i64, maxt: i64) -> Vec<HistogramSample> {
        match &self.extra {
            Some(e) => e
                .hists
                .iter()
                .filter(|h| (mint..=maxt).contains(&h.t))
                .cloned()
                .collect(),
            None => Vec::new(),
        }
    }

    /// Drops everything older than `boundary`; returns the number of float samples dropped.
    fn truncate_before(&mut self, boundary: i64) -> usize {
        if self.min_t >= boundary {
            return 0;
        }
        let before = self.float_count();
        let mut keep = Vec::new();
        self.floats(boundary, i64::MAX, &mut keep);
        let (last_t, last_v) = (self.last_t, self.last_v);
        self.sealed = Vec::new();
        self.open = HeadChunk::default();
        self.last_t = i64::MIN;
        self.min_t = i64::MAX;
        self.max_t = i64::MIN;
        // Re-appending folds accepted out-of-order samples into ordinary chunks.
        if let Some(e) = &mut self.extra {
            e.ooo.clear();
        }
        for s in &keep {
            self.push_in_order(s.t, s.v);
        }
        if keep.is_empty() {
            // Keep the ordering reference so late samples are still judged against the newest one.
            self.last_t = last_t;
            self.last_v = last_v;
        }
        if let Some(mut e) = self.extra.take() {
            e.hists.retain(|h| h.t >= boundary);
            for h in &e.hists {
                self.min_t = self.min_t.min(h.t);
                self.max_t = self.max_t.max(h.t);
            }
            if !(e.hists.is_empty() && e.exemplars.is_empty() && e.ooo.is_empty()) {
                self.extra = Some(e);
            }
        }
        before - keep.len()
    }

    fn has_data(&self) -> bool {
        self.min_t != i64::MAX
    }
}

/// Grows a vector by at most an eighth (at least one element) instead of doubling: per-series and
/// per-shard vectors are numerous or huge, and doubling would leave up to half of them unused.
fn grow_exact<T>(v: &mut Vec<T>) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.len() / 8).max(1));
    }
}

#[derive(Default)]
struct Shard {
    /// Label hash → slot. Collisions of the 64-bit hash are real but rare: they go to `collisions`.
    by_hash: HashMap<u64, u32, BuildIdHasher>,
    collisions: HashMap<u64, Vec<u32>, BuildIdHasher>,
    series: Vec<MemSeries>,
    free: Vec<u32>,
}

fn labels_equal(pairs: &[u32], labels: &Labels, syms: &Symbols) -> bool {
    pairs.len() == labels.len() * 2
        && labels
            .iter()
            .zip(pairs.chunks_exact(2))
            .all(|(l, p)| syms.get(p[0]) == l.name && syms.get(p[1]) == l.value)
}

fn labels_equal_raw(pairs: &[u32], labels: &[(&str, &str)], syms: &Symbols) -> bool {
    pairs.len() == labels.len() * 2
        && labels
            .iter()
            .zip(pairs.chunks_exact(2))
            .all(|(l, p)| syms.get(p[0]) == l.0 && syms.get(p[1]) == l.1)
}

impl Shard {
    /// The slot of the series with label hash `hash` whose interned pairs satisfy `eq` (the hash
    /// slot first, then the rare collision list).
    fn lookup_by(&self, hash: u64, eq: impl Fn(&[u32]) -> bool) -> Option<u32> {
        let slot = *self.by_hash.get(&hash)?;
        if eq(&self.series[slot as usize].labels) {
            return Some(slot);
        }
        self.collisions
            .get(&hash)?
            .iter()
            .copied()
            .find(|&s| eq(&self.series[s as usize].labels))
    }

    fn lookup_raw(&self, hash: u64, labels: &[(&str, &str)], syms: &Symbols) -> Option<u32> {
        self.lookup_by(hash, |pairs| labels_equal_raw(pairs, labels, syms))
    }

    fn lookup(&self, hash: u64, labels: &Labels, syms: &Symbols) -> Option<u32> {
        self.lookup_by(hash, |pairs| labels_equal(pairs, labels, syms))
    }

    fn insert(&mut self, hash: u64, pairs: Box<[u32]>) -> u32 {
        let series = MemSeries::new(pairs);
        let slot = match self.free.pop() {
            Some(s) => {
                self.series[s as usize] = series;
                s
            }
            None => {
                if self.series.len() == self.series.capacity() {
                    self.series.reserve_exact((self.series.len() / 8).max(64));
                }
                self.series.push(series);
                (self.series.len() - 1) as u32
            }
        };
        self.link(hash, slot);
        slot
    }

    fn link(&mut self, hash: u64, slot: u32) {
        if let Some(prev) = self.by_hash.insert(hash, slot) {
            // Hash collision: keep the first in the fast map.
            self.by_hash.insert(hash, prev);
            self.collisions.entry(hash).or_default().push(slot);
        }
    }

    fn unlink(&mut self, hash: u64, slot: u32) {
        if self.by_hash.get(&hash) == Some(&slot) {
            self.by_hash.remove(&hash);
            if let Some(list) = self.collisions.get_mut(&hash) {
                if let Some(next) = list.pop() {
                    self.by_hash.insert(hash, next);
                }
                if list.is_empty() {
                    self.collisions.remove(&hash);
                }
            }
        } else if let Some(list) = self.collisions.get_mut(&hash) {
            list.retain(|&s| s != slot);
            if list.is_empty() {
                self.collisions.remove(&hash);
            }
        }
    }

    fn free_slot(&mut self, slot: u32) {
        self.series[slot as usize] = MemSeries::new(Box::new([]));
        self.free.push(slot);
    }
}

/// Hash of a label set for head lookups: 8 bytes at a time with a multiply-xorshift mix, several
/// times faster than the byte-wise FNV of `Labels::stable_hash` (lookups hash every series of every
/// request). Only used in memory, so it need not be stable across versions.
pub(crate) fn label_hash(labels: &Labels) -> u64 {
    label_hash_pairs(labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))
}

/// [`label_hash`] of sorted borrowed pairs (the same value for the same labels).
#[inline]
pub(crate) fn label_hash_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    #[inline]
    fn mix(h: u64, x: u64) -> u64 {
        let v = (h ^ x).wrapping_mul(K);
        v ^ (v >> 29)
    }
    fn bytes(mut h: u64, b: &[u8]) -> u64 {
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            h = mix(h, u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rem = chunks.remainder();
        let mut last = [0u8; 8];
        last[..rem.len()].copy_from_slice(rem);
        // The length separates "ab"+"c" from "a"+"bc".
        mix(h, u64::from_le_bytes(last) ^ ((b.len() as u64) << 56))
    }
    let mut h = K;
    for (n, v) in pairs {
        h = bytes(h, n.as_bytes());
        h = bytes(h, v.as_bytes());
    }
    let h = (h ^ (h >> 32)).wrapping_mul(K);
    h ^ (h >> 31)
}

/// Keys of the lookup maps are already hashes: pass them through instead of SipHashing again.
#[derive(Clone, Copy, Default)]
struct BuildIdHasher;

#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; fold anything else defensively.
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b) ^ (self.0 >> 56);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

impl std::hash::BuildHasher for BuildIdHasher {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

#[inline]
fn split_id(id: u32) -> (usize, usize) {
    ((id as usize) & (SHARDS - 1), (id as usize) / SHARDS)
}

#[inline]
fn make_id(shard: usize, slot: u32) -> u32 {
    slot * SHARDS as u32 + shard as u32
}

#[inline]
fn shard_of(hash: u64) -> usize {
    // hashbrown uses the low bits (bucket) and the top 7 bits (tag) of the in-shard map keys;
    // take middle bits here so that neither is constant within a shard.
    (hash >> 32) as usize & (SHARDS - 1)
}

/// The head of one tenant.
pub(crate) struct Head {
    shards: Box<[Mutex<Shard>]>,
    symbols: RwLock<Symbols>,
    postings: RwLock<Postings>,
    /// Samples older than this were cut into blocks and are rejected.
    min_valid: AtomicI64,
    active: AtomicU64,
    samples: AtomicU64,
    metadata: RwLock<HashMap<String, Metadata>>,
}

impl Default for Head {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            symbols: RwLock::default(),
            postings: RwLock::default(),
            min_valid: AtomicI64::new(i64::MIN),
            active: AtomicU64::new(0),
            samples: AtomicU64::new(0),
            metadata: RwLock::default(),
        }
    }
}

/// Collects the first few rejection messages and counts all.
struct Rejections {
    messages: Vec<String>,
    count: usize,
}

impl Rejections {
    fn add(&mut self, f: impl FnOnce() -> String) {
        if self.messages.len() < MAX_MESSAGES {
            self.messages.push(f());
        }
        self.count += 1;
    }
}

impl Head {
    /// Samples older than this are rejected (they belong to blocks already cut).
    pub(crate) fn min_valid_time(&self) -> i64 {
        self.min_valid.load(Ordering::Acquire)
    }

    /// Raises the minimum valid time (never lowers it).
    pub(crate) fn set_min_valid_time(&self, t: i64) {
        self.min_valid.fetch_max(t, Ordering::AcqRel);
    }

    /// Number of live series.
    pub(crate) fn active_series(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Number of float samples held.
    pub(crate) fn sample_count(&self) -> u64 {
        self.samples.load(Ordering::Relaxed)
    }

    /// Heap bytes held by series (structs, labels, chunks, lookup maps), without allocator
    /// overhead, postings and symbols: `(series structs, chunk bytes, other)`.
    pub(crate) fn memory_estimate(&self) -> (usize, usize, usize) {
        use std::mem::size_of;
        let (mut structs, mut chunks, mut other) = (0, 0, 0);
        for sh in self.shards.iter() {
            let sh = sh.lock();
            structs += sh.series.capacity() * size_of::<MemSeries>();
            other += sh.by_hash.capacity() * (size_of::<(u64, u32)>() + 1);
            for s in &sh.series {
                other += s.labels.len() * 4;
                other += s.sealed.capacity() * size_of::<SealedChunk>();
                chunks += s.sealed.iter().map(|c| c.data.len()).sum::<usize>() + s.open.capacity();
            }
        }
        (structs, chunks, other)
    }

    fn resolve(&self, pairs: &[u32], syms: &Symbols) -> Labels {
        Labels::from_sorted(
            pairs
                .chunks_exact(2)
                .map(|p| Label::new(syms.get(p[0]), syms.get(p[1])))
                .collect(),
        )
    }

    /// Validates and applies a write. Returns the WAL record of what was applied and the outcome.
    /// A request that would exceed `max_active_series` is refused whole, before anything is applied.
    pub(crate) fn append(
        &self,
        tenant: &TenantId,
        batch: WriteBatch,
        limits: &Limits,
    ) -> Result<(WalBatch, WriteOutcome), Error> {
        let ooo_window = limits.out_of_order_time_window.as_millis();
        let min_valid = self.min_valid_time();
        let hashes: Vec<u64> = batch.series.iter().map(|s| label_hash(&s.labels)).collect();
        let mut ids: Vec<Option<u32>> = Vec::with_capacity(batch.series.len());
        {
            let syms = self.symbols.read();
            for (s, &h) in batch.series.iter().zip(&hashes) {
                let shard = shard_of(h);
                ids.push(
                    self.shards[shard]
                        .lock()
                        .lookup(h, &s.labels, &syms)
                        .map(|slot| make_id(shard, slot)),
                );
            }
        }
        let mut wal = WalBatch::default();
        if ids.iter().any(Option::is_none) {
            self.create_series(tenant, &batch, &hashes, &mut ids, limits, &mut wal)?;
        }

        let mut out = WriteOutcome::default();
        let mut rej = Rejections {
            messages: Vec::new(),
            count: 0,
        };
        let mut added = 0u64;
        for (sw, id) in batch.series.into_iter().zip(ids) {
            let id = id.expect("created above");
            let (shard, slot) = split_id(id);
            let mut accepted = Vec::with_capacity(sw.samples.len());
            let mut hists = Vec::new();
            let mut exemplars = Vec::new();
            {
                let mut sh = self.shards[shard].lock();
                let series = &mut sh.series[slot];
                for s in sw.samples {
                    let r = if s.t < min_valid {
                        Err(Reject::OutOfBounds)
                    } else {
                        series.append_float(s, ooo_window)
                    };
                    match r {
                        Ok(true) => accepted.push(s),
                        Ok(false) => {}
                        Err(e) => {
                            rej.add(|| reject_message(e, s.t, min_valid, ooo_window, &sw.labels))
                        }
                    }
                }
                for h in sw.histograms {
                    let t = h.t;
                    let r = if t < min_valid {
                        Err(Reject::OutOfBounds)
                    } else {
                        series.append_histogram(h.clone(), ooo_window, false)
                    };
                    match r {
                        Ok(true) => hists.push(h),
                        Ok(false) => {}
                        Err(e) => {
                            rej.add(|| reject_message(e, t, min_valid, ooo_window, &sw.labels))
                        }
                    }
                }
                for e in sw.exemplars {
                    if series.add_exemplar(e.clone()) {
                        exemplars.push(e);
                    }
                }
            }
            added += accepted.len() as u64;
            out.stats.samples += accepted.len() as u64;
            out.stats.histograms += hists.len() as u64;
            out.stats.exemplars += exemplars.len() as u64;
            if !accepted.is_empty() {
                wal.samples.push((id, accepted));
            }
            if !hists.is_empty() {
                wal.histograms.push((id, hists));
            }
            if !exemplars.is_empty() {
                wal.exemplars.push((id, exemplars));
            }
        }
        self.samples.fetch_add(added, Ordering::Relaxed);
        if !batch.metadata.is_empty() {
            let mut md = self.metadata.write();
            for (family, m) in &batch.metadata {
                md.insert(family.clone(), m.clone());
            }
            wal.metadata = batch.metadata;
        }
        out.rejected = rej.messages;
        out.rejected_count = rej.count;
        Ok((wal, out))
    }

    /// [`Head::append`] of a borrowed float-only write (the remote_write fast path), with the same
    /// semantics and messages, but without per-series allocations: series are looked up by their
    /// borrowed labels, each shard is locked once per phase (lookup, append), and accepted samples
    /// are encoded straight into the WAL record, which is returned (empty when there is nothing to
    /// log).
    pub(crate) fn append_raw(
        &self,
        tenant: &TenantId,
        w: &RawWrite<'_>,
        limits: &Limits,
    ) -> Result<(Vec<u8>, WriteOutcome), Error> {
        let ooo_window = limits.out_of_order_time_window.as_millis();
        let min_valid = self.min_valid_time();
        let n = w.series.len();
        let hashes: Vec<u64> = (0..n)
            .map(|i| label_hash_pairs(w.series_labels(i).iter().copied()))
            .collect();
        // Series grouped by shard, request order kept within a shard (a series named twice keeps
        // its samples in order; it always lands in the same shard).
        let mut starts = [0u32; SHARDS + 1];
        for &h in &hashes {
            starts[shard_of(h) + 1] += 1;
        }
        for k in 0..SHARDS {
            starts[k + 1] += starts[k];
        }
        let mut order = vec![0u32; n];
        {
            let mut next = starts;
            for (i, &h) in hashes.iter().enumerate() {
                let sh = shard_of(h);
                order[next[sh] as usize] = i as u32;
                next[sh] += 1;
            }
        }
        let by_shard = |k: usize| &order[starts[k] as usize..starts[k + 1] as usize];

        let mut ids = vec![u32::MAX; n];
        let mut missing = false;
        {
            let syms = self.symbols.read();
            for k in 0..SHARDS {
                let idx = by_shard(k);
                if idx.is_empty() {
                    continue;
                }
                let sh = self.shards[k].lock();
                // Three short passes instead of one long one: each series costs a few cache
                // misses (map bucket, series, its label ids) that do not depend on the other
                // series, and small loop bodies let the CPU keep many of them in flight.
                let slots: Vec<u32> = idx
                    .iter()
                    .map(|&i| {
                        sh.by_hash
                            .get(&hashes[i as usize])
                            .copied()
                            .unwrap_or(u32::MAX)
                    })
                    .collect();
                let touched = slots
                    .iter()
                    .filter(|&&s| s != u32::MAX)
                    .fold(0u32, |acc, &s| {
                        acc ^ sh.series[s as usize].labels.first().copied().unwrap_or(0)
                    });
                std::hint::black_box(touched);
                for (&i, &slot) in idx.iter().zip(&slots) {
                    let i = i as usize;
                    let labels = w.series_labels(i);
                    let found = if slot != u32::MAX
                        && labels_equal_raw(&sh.series[slot as usize].labels, labels, &syms)
                    {
                        Some(slot)
                    } else {
                        sh.lookup_raw(hashes[i], labels, &syms)
                    };
                    match found {
                        Some(slot) => ids[i] = make_id(k, slot),
                        None => missing = true,
                    }
                }
            }
        }
        let mut new_series = Vec::new();
        if missing {
            self.create_series_raw(tenant, w, &hashes, &mut ids, limits, &mut new_series)?;
        }

        let mut body = Vec::with_capacity(w.samples.len() * 8 + n * 4);
        let mut groups = 0usize;
        let mut added = 0u64;
        let mut accepted: Vec<Sample> = Vec::new();
        // (series index, sample index, why, timestamp): sorted afterwards so that the messages are
        // the first ones in request order, as `append` reports them.
        let mut rejects: Vec<(u32, u32, Reject, i64)> = Vec::new();
        for k in 0..SHARDS {
            let idx = by_shard(k);
            if idx.is_empty() {
                continue;
            }
            let mut sh = self.shards[k].lock();
            // Touch every open chunk's tail first, for the same reason as in the lookup.
            let touched = idx.iter().fold(0u8, |acc, &i| {
                let s = &sh.series[split_id(ids[i as usize]).1];
                acc ^ s.open.bytes().last().copied().unwrap_or(0)
            });
            std::hint::black_box(touched);
            for &i in idx {
                let id = ids[i as usize];
                let series = &mut sh.series[split_id(id).1];
                accepted.clear();
                for (j, &s) in w.series_samples(i as usize).iter().enumerate() {
                    let r = if s.t < min_valid {
                        Err(Reject::OutOfBounds)
                    } else {
                        series.append_float(s, ooo_window)
                    };
                    match r {
                        Ok(true) => accepted.push(s),
                        Ok(false) => {}
                        Err(e) => rejects.push((i, j as u32, e, s.t)),
                    }
                }
                if !accepted.is_empty() {
                    groups += 1;
                    added += accepted.len() as u64;
                    record::put_sample_group(&mut body, id, &accepted);
                }
            }
        }
        self.samples.fetch_add(added, Ordering::Relaxed);
        let mut out = WriteOutcome::default();
        out.stats.samples = added;
        out.rejected_count = rejects.len();
        if !rejects.is_empty() {
            rejects.sort_unstable_by_key(|r| (r.0, r.1));
            out.rejected = rejects
                .iter()
                .take(MAX_MESSAGES)
                .map(|&(i, _, e, t)| {
                    let labels = raw_labels(w.series_labels(i as usize));
                    reject_message(e, t, min_valid, ooo_window, &labels)
                })
                .collect();
        }
        let rec = if new_series.is_empty() && groups == 0 {
            Vec::new()
        } else {
            record::encode_raw(&new_series, groups, &body)
        };
        Ok((rec, out))
    }

    /// [`Head::create_series`] for [`Head::append_raw`].
    fn create_series_raw(
        &self,
        tenant: &TenantId,
        w: &RawWrite<'_>,
        hashes: &[u64],
        ids: &mut [u32],
        limits: &Limits,
        wal_series: &mut Vec<(u32, Labels)>,
    ) -> Result<(), Error> {
        let mut syms = self.symbols.write();
        let mut postings = self.postings.write();
        let mut missing = Vec::new();
        for (i, id) in ids.iter_mut().enumerate() {
            if *id == u32::MAX {
                let h = hashes[i];
                let shard = shard_of(h);
                if let Some(s) = self.shards[shard]
                    .lock()
                    .lookup_raw(h, w.series_labels(i), &syms)
                {
                    *id = make_id(shard, s);
                } else {
                    missing.push(i);
                }
            }
        }
        let distinct = {
            let mut seen: HashMap<&[(&str, &str)], ()> = HashMap::new();
            missing
                .iter()
                .filter(|&&i| seen.insert(w.series_labels(i), ()).is_none())
                .count()
        };
        let limit = limits.max_active_series;
        let active = self.active_series();
        if limit > 0 && active + distinct as u64 > limit {
            return Err(Error::TooManyRequests(format!(
                "per-tenant series limit of {limit} exceeded for tenant {tenant} (limit max_active_series): \
                 {active} series are active and this request would add {distinct}; reduce the cardinality of the data \
                 or raise max_active_series for the tenant"
            )));
        }
        let mut created: HashMap<&[(&str, &str)], u32> = HashMap::new();
        for i in missing {
            let labels = w.series_labels(i);
            if let Some(&id) = created.get(labels) {
                ids[i] = id;
                continue;
            }
            let pairs: Box<[u32]> = labels
                .iter()
                .flat_map(|&(n, v)| [syms.intern(n), syms.intern(v)])
                .collect();
            let h = hashes[i];
            let shard = shard_of(h);
            let slot = self.shards[shard].lock().insert(h, pairs.clone());
            let id = make_id(shard, slot);
            postings.add(&pairs, id);
            created.insert(labels, id);
            ids[i] = id;
            wal_series.push((id, raw_labels(labels)));
        }
        self.active
            .fetch_add(created.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Creates the series of `batch` that `ids` lacks, under the symbol and postings write locks (which
    /// also makes the active-series limit check exact under concurrency).
    fn create_series(
        &self,
        tenant: &TenantId,
        batch: &WriteBatch,
        hashes: &[u64],
        ids: &mut [Option<u32>],
        limits: &Limits,
        wal: &mut WalBatch,
    ) -> Result<(), Error> {
        let mut syms = self.symbols.write();
        let mut postings = self.postings.write();
        // Resolve again: another writer may have created some meanwhile; a batch may name a series twice.
        let mut missing = Vec::new();
        for (i, id) in ids.iter_mut().enumerate() {
            if id.is_none() {
                let h = hashes[i];
                let shard = shard_of(h);
                *id = self.shards[shard]
                    .lock()
                    .lookup(h, &batch.series[i].labels, &syms)
                    .map(|s| make_id(shard, s));
                if id.is_none() {
                    missing.push(i);
                }
            }
        }
        let mut distinct: Vec<usize> = Vec::with_capacity(missing.len());
        {
            let mut seen: HashMap<&Labels, ()> = HashMap::new();
            for &i in &missing {
                if seen.insert(&batch.series[i].labels, ()).is_none() {
                    distinct.push(i);
                }
            }
        }
        let limit = limits.max_active_series;
        let active = self.active_series();
        if limit > 0 && active + distinct.len() as u64 > limit {
            return Err(Error::TooManyRequests(format!(
                "per-tenant series limit of {limit} exceeded for tenant {tenant} (limit max_active_series): \
                 {active} series are active and this request would add {}; reduce the cardinality of the data \
                 or raise max_active_series for the tenant",
                distinct.len()
            )));
        }
        let mut created: HashMap<&Labels, u32> = HashMap::new();
        for i in missing {
            let labels = &batch.series[i].labels;
            if let Some(&id) = created.get(labels) {
                ids[i] = Some(id);
                continue;
            }
            let pairs: Box<[u32]> = labels
                .iter()
                .flat_map(|l| [syms.intern(&l.name), syms.intern(&l.value)])
                .collect();
            let h = hashes[i];
            let shard = shard_of(h);
            let slot = self.shards[shard].lock().insert(h, pairs.clone());
            let id = make_id(shard, slot);
            postings.add(&pairs, id);
            created.insert(labels, id);
            ids[i] = Some(id);
            wal.series.push((id, labels.clone()));
        }
        self.active
            .fetch_add(created.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Applies a WAL record during replay: no limits, order-insensitive (concurrent writers may have
    /// reached the log in a different order than the head), data older than the min valid time skipped.
    pub(crate) fn replay(&self, b: WalBatch) {
        if let Some(t) = b.min_valid_time {
            self.set_min_valid_time(t);
        }
        let min_valid = self.min_valid_time();
        if !b.series.is_empty() {
            let mut syms = self.symbols.write();
            let mut postings = self.postings.write();
            for (id, labels) in b.series {
                let (shard, slot) = split_id(id);
                let pairs: Box<[u32]> = labels
                    .iter()
                    .flat_map(|l| [syms.intern(&l.name), syms.intern(&l.value)])
                    .collect();
                let h = label_hash(&labels);
                let mut sh = self.shards[shard].lock();
                if sh.series.len() <= slot {
                    let old = sh.series.len();
                    sh.series
                        .resize_with(slot + 1, || MemSeries::new(Box::new([])));
                    sh.free.extend(old as u32..slot as u32);
                }
                let cur = &sh.series[slot];
                if !cur.is_free() {
                    if cur.labels == pairs {
                        continue;
                    }
                    // The id was reused after a GC the log still remembers: the old series is gone.
                    let old_pairs = cur.labels.clone();
                    let old_h = label_hash(&self.resolve(&old_pairs, &syms));
                    let n = cur.float_count() as u64;
                    sh.unlink(old_h, slot as u32);
                    sh.series[slot] = MemSeries::new(Box::new([]));
                    postings.remove(&old_pairs, id);
                    self.active.fetch_sub(1, Ordering::Relaxed);
                    self.samples.fetch_sub(n, Ordering::Relaxed);
                }
                sh.free.retain(|&s| s as usize != slot);
                sh.series[slot] = MemSeries::new(pairs.clone());
                sh.link(h, slot as u32);
                postings.add(&pairs, id);
                self.active.fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut added = 0u64;
        for (id, samples) in b.samples {
            let (shard, slot) = split_id(id);
            let mut sh = self.shards[shard].lock();
            let Some(series) = sh.series.get_mut(slot).filter(|s| !s.is_free()) else {
                continue;
            };
            for s in samples {
                if s.t < min_valid {
                    continue;
                }
                let ok = if s.t > series.last_t {
                    series.push_in_order(s.t, s.v);
                    true
                } else {
                    s.t != series.last_t && matches!(series.insert_ooo(s), Ok(true))
                };
                added += u64::from(ok);
            }
        }
        self.samples.fetch_add(added, Ordering::Relaxed);
        for (id, hs) in b.histograms {
            let (shard, slot) = split_id(id);
            let mut sh = self.shards[shard].lock();
            let Some(series) = sh.series.get_mut(slot).filter(|s| !s.is_free()) else {
                continue;
            };
            for h in hs.into_iter().filter(|h| h.t >= min_valid) {
                let _ = series.append_histogram(h, 0, true);
            }
        }
        for (id, es) in b.exemplars {
            let (shard, slot) = split_id(id);
            let mut sh = self.shards[shard].lock();
            let Some(series) = sh.series.get_mut(slot).filter(|s| !s.is_free()) else {
                continue;
            };
            for e in es {
                series.add_exemplar(e);
            }
        }
        if !b.metadata.is_empty() {
            let mut md = self.metadata.write();
            for (family, m) in b.metadata {
                md.insert(family, m);
            }
        }
    }

    /// Ids of live series matching `matchers`.
    fn matching(&self, matchers: &[Matcher], syms: &Symbols) -> Vec<u32> {
        self.postings.read().select(matchers, syms)
    }

    /// Series matching `matchers` with data in `[mint, maxt]`, unsorted;
    /// `None` as soon as more than `max_series` (0 = unlimited) series have data in range.
    pub(crate) fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        max_series: usize,
    ) -> Option<Vec<SeriesData>> {
        let syms = self.symbols.read();
        let mut out = Vec::new();
        for id in self.matching(matchers, &syms) {
            let (shard, slot) = split_id(id);
            let sh = self.shards[shard].lock();
            let s = &sh.series[slot];
            if s.is_free() || s.max_t < mint || s.min_t > maxt {
                continue;
            }
            let mut samples = Vec::new();
            s.floats(mint, maxt, &mut samples);
            let histograms = s.histograms(mint, maxt);
            if samples.is_empty() && histograms.is_empty() {
                continue;
            }
            if max_series > 0 && out.len() >= max_series {
                return None;
            }
            let labels = self.resolve(&s.labels, &syms);
            out.push(SeriesData {
                labels,
                samples,
                histograms,
            });
        }
        Some(out)
    }

    /// Label sets of series matching `matchers` with data in `[mint, maxt]`, unsorted.
    pub(crate) fn series(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Labels> {
        let syms = self.symbols.read();
        let mut out = Vec::new();
        for id in self.matching(matchers, &syms) {
            let (shard, slot) = split_id(id);
            let sh = self.shards[shard].lock();
            let s = &sh.series[slot];
            if s.is_free() || !s.has_data() || s.max_t < mint || s.min_t > maxt {
                continue;
            }
            out.push(self.resolve(&s.labels, &syms));
        }
        out
    }

    /// Exemplars in `[mint, maxt]` of series matching `matchers`.
    pub(crate) fn exemplars(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Vec<(Labels, Vec<Exemplar>)> {
        let syms = self.symbols.read();
        let mut out = Vec::new();
        for id in self.matching(matchers, &syms) {
            let (shard, slot) = split_id(id);
            let sh = self.shards[shard].lock();
            let s = &sh.series[slot];
            let Some(e) = &s.extra else { continue };
            let es: Vec<Exemplar> = e
                .exemplars
                .iter()
                .filter(|e| (mint..=maxt).contains(&e.t))
                .cloned()
                .collect();
            if !es.is_empty() {
                out.push((self.resolve(&s.labels, &syms), es));
            }
        }
        out
    }

    /// Metadata per family.
    pub(crate) fn metadata(&self) -> Vec<(String, Metadata)> {
        self.metadata
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Label names of all series, without decoding anything (the fast path of label APIs).
    pub(crate) fn all_label_names(&self) -> Vec<String> {
        let syms = self.symbols.read();
        let p = self.postings.read();
        p.names().map(|n| syms.get(n).to_string()).collect()
    }

    /// Values of label `name` over all series.
    pub(crate) fn all_label_values(&self, name: &str) -> Vec<String> {
        let syms = self.symbols.read();
        let Some(n) = syms.lookup(name) else {
            return Vec::new();
        };
        let p = self.postings.read();
        p.values(n).map(|(v, _)| syms.get(v).to_string()).collect()
    }

    /// `(min, max)` time over all data, if any.
    pub(crate) fn time_range(&self) -> Option<(i64, i64)> {
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for sh in self.shards.iter() {
            for s in sh.lock().series.iter().filter(|s| s.has_data()) {
                lo = lo.min(s.min_t);
                hi = hi.max(s.max_t);
            }
        }
        (lo <= hi).then_some((lo, hi))
    }

    /// Live series overlapping `[mint, maxt]`, as (labels, id), sorted by labels — the order blocks need.
    pub(crate) fn sorted_series(&self, mint: i64, maxt: i64) -> Vec<(Labels, u32)> {
        let syms = self.symbols.read();
        let mut out = Vec::new();
        for (shard, sh) in self.shards.iter().enumerate() {
            let sh = sh.lock();
            for (slot, s) in sh.series.iter().enumerate() {
                if !s.is_free() && s.has_data() && s.max_t >= mint && s.min_t <= maxt {
                    out.push((self.resolve(&s.labels, &syms), make_id(shard, slot as u32)));
                }
            }
        }
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Data of one series in `[mint, maxt]`.
    pub(crate) fn series_data(
        &self,
        id: u32,
        mint: i64,
        maxt: i64,
    ) -> (Vec<Sample>, Vec<HistogramSample>) {
        let (shard, slot) = split_id(id);
        let sh = self.shards[shard].lock();
        let s = &sh.series[slot];
        if s.is_free() {
            return (Vec::new(), Vec::new());
        }
        let mut f = Vec::new();
        s.floats(mint, maxt, &mut f);
        (f, s.histograms(mint, maxt))
    }

    /// Drops all data older than `boundary` (already in blocks) and the series left without data.
    pub(crate) fn truncate_before(&self, boundary: i64) {
        self.set_min_valid_time(boundary);
        let mut syms = self.symbols.write();
        let mut postings = self.postings.write();
        let mut dropped = 0u64;
        let mut removed = 0u64;
        for (shard, sh) in self.shards.iter().enumerate() {
            let mut sh = sh.lock();
            let mut dead = Vec::new();
            for (slot, s) in sh.series.iter_mut().enumerate() {
                if s.is_free() {
                    continue;
                }
                dropped += s.truncate_before(boundary) as u64;
                if !s.has_data() {
                    dead.push(slot as u32);
                }
            }
            for slot in dead {
                let pairs = sh.series[slot as usize].labels.clone();
                let h = label_hash(&self.resolve(&pairs, &syms));
                sh.unlink(h, slot);
                sh.free_slot(slot);
                postings.remove(&pairs, make_id(shard, slot));
                removed += 1;
            }
        }
        self.samples
            .fetch_sub(dropped.min(self.sample_count()), Ordering::Relaxed);
        self.active.fetch_sub(removed, Ordering::Relaxed);
        if removed > 0 && self.active_series() == 0 {
            // Nothing references any symbol: start the table afresh so churned strings do not pile up.
            *syms = Symbols::default();
        }
    }

    /// The whole head as WAL records of at most about `max_bytes` each (the checkpoint).
    pub(crate) fn checkpoint(&self, max_bytes: usize) -> Vec<WalBatch> {
        let syms = self.symbols.read();
        let mut out = Vec::new();
        let mut cur = WalBatch {
            min_valid_time: Some(self.min_valid_time()),
            ..Default::default()
        };
        cur.metadata = self.metadata();
        let mut size = 0usize;
        for (shard, sh) in self.shards.iter().enumerate() {
            let sh = sh.lock();
            for (slot, s) in sh.series.iter().enumerate() {
                if s.is_free() {
                    continue;
                }
                let id = make_id(shard, slot as u32);
                let labels = self.resolve(&s.labels, &syms);
                size += 16
                    + labels
                        .iter()
                        .map(|l| l.name.len() + l.value.len() + 2)
                        .sum::<usize>();
                cur.series.push((id, labels));
                let mut f = Vec::new();
                s.floats(i64::MIN, i64::MAX, &mut f);
                size += f.len() * 10;
                if !f.is_empty() {
                    cur.samples.push((id, f));
                }
                if let Some(e) = &s.extra {
                    if !e.hists.is_empty() {
                        size += e.hists.len() * 64;
                        cur.histograms.push((id, e.hists.clone()));
                    }
                    if !e.exemplars.is_empty() {
                        size += e.exemplars.len() * 64;
                        cur.exemplars
                            .push((id, e.exemplars.iter().cloned().collect()));
                    }
                }
                if size >= max_bytes {
                    out.push(std::mem::take(&mut cur));
                    size = 0;
                }
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }
}

fn reject_message(e: Reject, t: i64, min_valid: i64, window: i64, labels: &Labels) -> String {
    match e {
        Reject::OutOfOrder { last } => format!(
            "out of order sample: timestamp {t} is older than the newest sample ({last}) of series {labels} \
             by more than the out-of-order window of {window}ms (limit out_of_order_time_window)"
        ),
        Reject::Duplicate => {
            format!("duplicate sample for timestamp {t} with a different value in series {labels}")
        }
        Reject::OutOfBounds => format!(
            "out of bounds: timestamp {t} of series {labels} is older than the head's minimum valid time \
             {min_valid}; that time range is already cut into blocks"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_hash_separates_boundaries_and_values() {
        let a = Labels::from_pairs([("ab", "c")]);
        let b = Labels::from_pairs([("a", "bc")]);
        let c = Labels::from_pairs([("a", "bc"), ("d", "")]);
        assert_ne!(label_hash(&a), label_hash(&b));
        assert_eq!(label_hash(&b), label_hash(&b.clone()));
        let long = Labels::from_pairs([("instance", "host-0001.example.internal:9100")]);
        let long2 = Labels::from_pairs([("instance", "host-0002.example.internal:9100")]);
        assert_ne!(label_hash(&long), label_hash(&long2));
        assert_ne!(label_hash(&c), label_hash(&b));
        // Shards are used evenly.
        let mut counts = [0usize; SHARDS];
        for i in 0..32_000 {
            counts[shard_of(label_hash(&Labels::from_pairs([("i", i.to_string())])))] += 1;
        }
        assert!(
            counts.iter().all(|&c| (700..1300).contains(&c)),
            "{counts:?}"
        );
    }
}
