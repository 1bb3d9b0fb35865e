//! Following files: discovery by glob, reading new lines, rotation, truncation and deletion.
//!
//! Each followed file keeps its handle open, so a file renamed away by rotation is still read to
//! its end before the new file at the same path is started from offset 0; identity is
//! (device, inode) of the path (symlinks followed: Docker's pod logs are links). A file that
//! shrank below the read offset was truncated in place (copytruncate) and is read again from 0. A
//! last line without its newline waits for the rest (kept in memory up to the maximum line size;
//! longer lines are cut). Reading is polling-based: no inotify, which does not see through
//! bind-mounted host paths reliably anyway.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::format::Decoder;
use super::labels::{LabelRules, Source};
use super::positions::{Position, Positions};
use super::ship::Batch;
use super::Stats;

/// Raw lines get this much room beyond `max_line` for the CRI/Docker framing around the message.
const FRAMING_SLACK: usize = 1024;
const READ_BUF: usize = 64 << 10;

/// What the tailer follows and how.
#[derive(Clone, Debug)]
pub struct TailerOptions {
    /// Glob of pod log files (empty: none).
    pub pod_logs_glob: String,
    /// Globs of plain files.
    pub files: Vec<String>,
    /// Entries are cut at this many bytes.
    pub max_line: usize,
    /// Files without a saved position found by the first scan start at their end.
    pub tail_from_end: bool,
    /// Labels and tenants.
    pub rules: LabelRules,
}

/// Identity of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(m: &std::fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

struct Tracked {
    id: FileId,
    file: File,
    /// Matched the pod logs glob.
    pod: bool,
    source: Arc<Source>,
    /// Next byte to read (the handle's position).
    read_offset: u64,
    /// Offset of the first byte of `line`, the incomplete line.
    line_start: u64,
    line: Vec<u8>,
    /// `line` was cut at the maximum size; the rest up to the newline is skipped.
    line_truncated: bool,
    decoder: Decoder,
}

impl Tracked {
    /// Offset up to which everything read was emitted: a restart resumes here.
    fn committed(&self) -> u64 {
        self.decoder
            .pending_start()
            .map_or(self.line_start, |p| p.min(self.line_start))
    }
}

/// Follows the files matching the configured globs.
pub struct Tailer {
    opts: TailerOptions,
    files: BTreeMap<PathBuf, Tracked>,
    /// Saved positions, consulted when a file is first opened.
    saved: Positions,
    scanned: bool,
    /// Paths that failed to open (warned once).
    unreadable: HashSet<PathBuf>,
    buf: Vec<u8>,
    stats: Arc<Stats>,
    /// Where the next poll starts, so that one busy file cannot starve the others.
    cursor: usize,
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

impl Tailer {
    /// A tailer resuming from `saved` positions; call [`Tailer::scan`] to find files.
    pub fn new(opts: TailerOptions, saved: Positions, stats: Arc<Stats>) -> Self {
        Self {
            opts,
            files: BTreeMap::new(),
            saved,
            scanned: false,
            unreadable: HashSet::new(),
            buf: vec![0; READ_BUF],
            stats,
            cursor: 0,
        }
    }

    /// Paths currently followed.
    pub fn followed(&self) -> Vec<PathBuf> {
        self.files.keys().cloned().collect()
    }

    /// Evaluates the globs and starts following files not followed yet.
    pub fn scan(&mut self) {
        let mut found: Vec<(PathBuf, bool)> = Vec::new();
        let globs = std::iter::once((&self.opts.pod_logs_glob, true))
            .filter(|(g, _)| !g.is_empty())
            .chain(self.opts.files.iter().map(|g| (g, false)));
        for (g, pod) in globs {
            let Ok(paths) = glob::glob(g) else { continue };
            // Unreadable directories are skipped silently: the glob is re-evaluated later.
            for p in paths.flatten() {
                if !found.iter().any(|(f, _)| *f == p) {
                    found.push((p, pod));
                }
            }
        }
        for (path, pod) in found {
            if let Some(t) = self.files.get_mut(&path) {
                // Labels guessed before the pod's metadata was known are redone once it is.
                if t.source.provisional {
                    let s = self.opts.rules.source(&path, pod);
                    if !s.provisional {
                        t.source = Arc::new(s);
                    }
                }
                continue;
            }
            let initial = !self.scanned;
            if let Some(t) = self.open(&path, pod, initial) {
                self.files.insert(path, t);
            }
        }
        self.scanned = true;
        self.stats
            .files
            .store(self.files.len() as u64, Ordering::Relaxed);
    }

    fn open(&mut self, path: &Path, pod: bool, initial: bool) -> Option<Tracked> {
        let opened = File::open(path).and_then(|f| {
            let m = f.metadata()?;
            Ok((f, m))
        });
        let (mut file, meta) = match opened {
            Ok((f, m)) if m.is_file() => (f, m),
            Ok(_) => return None,
            Err(e) => {
                if self.unreadable.insert(path.to_path_buf()) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read log file, skipping it");
                }
                return None;
            }
        };
        self.unreadable.remove(path);
        let id = FileId::of(&meta);
        let len = meta.len();
        let start = match self.saved.get(path) {
            Some(p) if p.dev == id.dev && p.ino == id.ino && p.offset <= len => p.offset,
            Some(_) => 0,
            None if initial && self.opts.tail_from_end => len,
            None => 0,
        };
        if start > 0 {
            if let Err(e) = file.seek(SeekFrom::Start(start)) {
                tracing::warn!(path = %path.display(), error = %e, "cannot seek log file, skipping it");
                return None;
            }
        }
        let source = Arc::new(self.opts.rules.source(path, pod));
        tracing::debug!(path = %path.display(), offset = start, "following log file");
        Some(Tracked {
            id,
            file,
            pod,
            decoder: Decoder::new(source.format, self.opts.max_line),
            source,
            read_offset: start,
            line_start: start,
            line: Vec::new(),
            line_truncated: false,
        })
    }

    /// Reads new lines of every followed file into `batch` until it holds `max_bytes`; handles
    /// truncation, rotation and deletion. Returns the number of bytes read.
    pub fn poll(&mut self, batch: &mut Batch, max_bytes: usize) -> u64 {
        let mut paths: Vec<PathBuf> = self.files.keys().cloned().collect();
        if paths.is_empty() {
            return 0;
        }
        let start = self.cursor % paths.len();
        paths.rotate_left(start);
        let mut total = 0;
        for (i, path) in paths.into_iter().enumerate() {
            if batch.bytes() >= max_bytes {
                self.cursor = start + i;
                break;
            }
            let Some(mut t) = self.files.remove(&path) else {
                continue;
            };
            let (eof, n) = self.read(&path, &mut t, batch, max_bytes);
            total += n;
            if !eof {
                self.files.insert(path, t);
                continue;
            }
            // At the end of the open file: is the path still this file?
            match std::fs::metadata(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::debug!(path = %path.display(), "log file deleted");
                    self.finish(t, batch);
                }
                Ok(m) if FileId::of(&m) != t.id => {
                    tracing::debug!(path = %path.display(), "log file rotated");
                    let pod = t.pod;
                    self.finish(t, batch);
                    self.stats.rotations.fetch_add(1, Ordering::Relaxed);
                    if let Some(mut new) = self.open(&path, pod, false) {
                        let (_, n) = self.read(&path, &mut new, batch, max_bytes);
                        total += n;
                        self.files.insert(path, new);
                    }
                }
                _ => {
                    self.files.insert(path, t);
                }
            }
        }
        self.stats
            .files
            .store(self.files.len() as u64, Ordering::Relaxed);
        total
    }

    /// Emits what is left of a file that will not grow any more.
    fn finish(&mut self, mut t: Tracked, batch: &mut Batch) {
        let now = now_ns();
        if !t.line.is_empty() {
            let line = std::mem::take(&mut t.line);
            emit(&mut t, &line, batch, &self.stats, now, false);
        }
        for e in t.decoder.finish(now) {
            batch.add(&t.source, e);
        }
    }

    /// Reads `t` until EOF or a full batch; returns (at EOF, bytes read).
    fn read(
        &mut self,
        path: &Path,
        t: &mut Tracked,
        batch: &mut Batch,
        max_bytes: usize,
    ) -> (bool, u64) {
        match t.file.metadata() {
            Ok(m) if m.len() < t.read_offset => {
                tracing::info!(path = %path.display(), size = m.len(), offset = t.read_offset, "log file truncated, reading it from the start");
                self.stats.truncations.fetch_add(1, Ordering::Relaxed);
                if t.file.seek(SeekFrom::Start(0)).is_err() {
                    return (true, 0);
                }
                t.read_offset = 0;
                t.line_start = 0;
                t.line.clear();
                t.line_truncated = false;
                t.decoder.reset();
            }
            _ => {}
        }
        let raw_max = self.opts.max_line + FRAMING_SLACK;
        let mut total = 0u64;
        loop {
            if batch.bytes() >= max_bytes {
                return (false, total);
            }
            let n = match t.file.read(&mut self.buf) {
                Ok(0) => return (true, total),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "reading log file failed");
                    return (true, total);
                }
            };
            let now = now_ns();
            let mut chunk = &self.buf[..n];
            let start = t.read_offset;
            let mut pos = start;
            let mut full = false;
            while let Some(i) = memchr::memchr(b'\n', chunk) {
                let piece = &chunk[..i];
                if t.line.is_empty() && !t.line_truncated {
                    let cut = piece.len() > raw_max;
                    emit(
                        t,
                        &piece[..piece.len().min(raw_max)],
                        batch,
                        &self.stats,
                        now,
                        cut,
                    );
                } else {
                    let mut line = std::mem::take(&mut t.line);
                    let mut cut = t.line_truncated;
                    append_capped(&mut line, piece, raw_max, &mut cut);
                    emit(t, &line, batch, &self.stats, now, cut);
                    line.clear();
                    t.line = line;
                }
                t.line_truncated = false;
                pos += i as u64 + 1;
                t.line_start = pos;
                chunk = &chunk[i + 1..];
                if batch.bytes() >= max_bytes && !chunk.is_empty() {
                    full = true;
                    break;
                }
            }
            if full {
                // Keep the batch bounded: the rest of the chunk is read again next time.
                if let Err(e) = t.file.seek(SeekFrom::Start(pos)) {
                    tracing::warn!(path = %path.display(), error = %e, "seeking log file failed");
                }
            } else {
                let mut cut = t.line_truncated;
                append_capped(&mut t.line, chunk, raw_max, &mut cut);
                t.line_truncated = cut;
                pos += chunk.len() as u64;
            }
            t.read_offset = pos;
            total += pos - start;
            self.stats.bytes.fetch_add(pos - start, Ordering::Relaxed);
        }
    }

    /// Where each followed file's queued lines end.
    pub fn positions(&self) -> Positions {
        self.files
            .iter()
            .map(|(p, t)| {
                (
                    p.clone(),
                    Position {
                        dev: t.id.dev,
                        ino: t.id.ino,
                        offset: t.committed(),
                    },
                )
            })
            .collect()
    }
}

fn emit(t: &mut Tracked, raw: &[u8], batch: &mut Batch, stats: &Stats, now: i64, cut: bool) {
    stats.lines.fetch_add(1, Ordering::Relaxed);
    let p = t.decoder.push(raw, t.line_start, now, cut);
    if p.malformed {
        stats.malformed.fetch_add(1, Ordering::Relaxed);
    }
    if p.truncated {
        stats.truncated.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(e) = p.entry {
        batch.add(&t.source, e);
    }
}

fn append_capped(buf: &mut Vec<u8>, more: &[u8], max: usize, cut: &mut bool) {
    let room = max.saturating_sub(buf.len());
    if more.len() > room {
        *cut = true;
    }
    buf.extend_from_slice(&more[..more.len().min(room)]);
}
