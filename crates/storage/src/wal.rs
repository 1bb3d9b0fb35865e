//! The write-ahead log: a write is acknowledged only once it is here, so `kill -9` loses nothing
//! acknowledged. The head of each signal is rebuilt from it on start.
//!
//! Layout: a directory of segment files named by zero-padded number (`00000001`), each a sequence of
//! records framed as `[u32 LE len][u32 LE crc32c(payload)][payload]`.
//!
//! Appends are group-committed: callers hand records to one dedicated writer thread over a channel;
//! the thread takes everything queued, gathers it into one reused buffer, writes it with one
//! `write_all` and fsyncs once, then wakes every caller of the batch. While one fsync runs the next
//! batch accumulates, so the number of fsyncs adapts to the disk instead of to the request rate.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::Error;

/// Largest record the WAL accepts.
pub const MAX_RECORD_SIZE: usize = 256 << 20;
/// Bytes of framing before each payload.
const HEADER_LEN: usize = 8;
/// A batch stops taking queued records beyond this many bytes, bounding memory and latency.
const MAX_BATCH_BYTES: usize = 16 << 20;
const INITIAL_BATCH_CAPACITY: usize = 1 << 20;

/// WAL tuning.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// A segment is closed and a new one started when the next record would take it past this size.
    pub segment_size: u64,
    /// Whether each group commit is fsynced (turn off only for throwaway data).
    pub fsync: bool,
}

impl WalOptions {
    /// Options from the storage config (`wal_fsync`), default segment size.
    pub fn from_config(cfg: &common::config::StorageConfig) -> Self {
        Self {
            fsync: cfg.wal_fsync,
            ..Self::default()
        }
    }
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_size: 64 << 20,
            fsync: true,
        }
    }
}

/// A write-ahead log in one directory. Cheap to clone; all clones share one writer thread.
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    tx: mpsc::Sender<Cmd>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// State the writer thread publishes to callers.
struct Shared {
    /// The segment appends currently go to; only grows.
    active: AtomicU64,
    /// Bytes over all segment files.
    disk_size: AtomicU64,
    /// Number of fsyncs of segment data (tests check that group commit batches).
    syncs: AtomicU64,
    /// Set once the writer thread has exited.
    stopped: AtomicBool,
}

enum Reply<T> {
    Async(oneshot::Sender<Result<T, Error>>),
    Blocking(mpsc::SyncSender<Result<T, Error>>),
}

impl<T> Reply<T> {
    fn send(self, r: Result<T, Error>) {
        // A caller that went away (dropped future) no longer cares about the outcome.
        match self {
            Reply::Async(tx) => {
                let _ = tx.send(r);
            }
            Reply::Blocking(tx) => {
                let _ = tx.send(r);
            }
        }
    }
}

enum Cmd {
    /// `crc` is computed by the caller, spreading checksum work over the callers' threads.
    Append {
        record: Vec<u8>,
        crc: u32,
        reply: Reply<u64>,
    },
    Cut(mpsc::SyncSender<Result<u64, Error>>),
    Close(mpsc::SyncSender<Result<(), Error>>),
}

impl Wal {
    /// Opens or creates the WAL in `dir`; calls `replay(segment_no, record_bytes)` for every intact
    /// record in order before returning. A torn/corrupt tail of the LAST segment is truncated (logged
    /// with `tracing::warn`); corruption in an earlier segment is an error ([`Error::WalCorrupt`],
    /// after the records before it were replayed), as is an error returned by `replay`. Appends go
    /// to a fresh segment after replay (an empty last segment is reused).
    ///
    /// One process must open a directory at most once at a time (there is no lock file).
    pub fn open(
        dir: &Path,
        opts: WalOptions,
        mut replay: impl FnMut(u64, &[u8]) -> Result<(), Error>,
    ) -> Result<Wal, Error> {
        fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create wal dir {}", dir.display()), e))?;
        let segments = list_segments(dir)?;
        // Damage is repairable only at the tail: in the last segment that holds any bytes (empty
        // segments after it are left by a crash right after a rotation or an open).
        let mut tail = 0;
        for &seg in segments.iter().rev() {
            let path = segment_path(dir, seg);
            let len = fs::metadata(&path)
                .map_err(|e| Error::io(format!("stat wal segment {}", path.display()), e))?
                .len();
            if len > 0 {
                tail = seg;
                break;
            }
        }
        let mut disk_size = 0u64;
        let mut buf = Vec::new();
        let mut last_len = None;
        for (i, &seg) in segments.iter().enumerate() {
            let is_last = i + 1 == segments.len();
            let is_tail = seg >= tail;
            let path = segment_path(dir, seg);
            buf.clear();
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut buf))
                .map_err(|e| Error::io(format!("read wal segment {}", path.display()), e))?;
            let (good, damage) = scan(&buf, |rec| replay(seg, rec))?;
            if let Some(reason) = damage {
                if !is_tail {
                    return Err(Error::WalCorrupt {
                        dir: dir.to_path_buf(),
                        segment: seg,
                        offset: good as u64,
                        reason,
                    });
                }
                tracing::warn!(
                    wal = %dir.display(),
                    segment = seg,
                    offset = good,
                    dropped_bytes = buf.len() - good,
                    reason = %reason,
                    "truncating torn wal tail"
                );
                let f = OpenOptions::new().write(true).open(&path).map_err(|e| {
                    Error::io(
                        format!("open wal segment {} to truncate", path.display()),
                        e,
                    )
                })?;
                f.set_len(good as u64)
                    .and_then(|_| f.sync_all())
                    .map_err(|e| {
                        Error::io(
                            format!("truncate wal segment {} to {good} bytes", path.display()),
                            e,
                        )
                    })?;
            }
            disk_size += good as u64;
            if is_last {
                last_len = Some(good as u64);
            }
        }
        drop(buf);

        // Appends never go into a segment that held records before this open: its tail was just
        // repaired, and keeping replayed and new records apart keeps checkpoints simple.
        let active = match (segments.last(), last_len) {
            (Some(&seg), Some(0)) => seg,
            (Some(&seg), _) => seg + 1,
            (None, _) => 1,
        };
        let file = create_segment(dir, active, opts.fsync)?;

        let shared = Arc::new(Shared {
            active: AtomicU64::new(active),
            disk_size: AtomicU64::new(disk_size),
            syncs: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            dir: dir.to_path_buf(),
            opts,
            shared: shared.clone(),
            file,
            segment: active,
            written: 0,
            broken: false,
            buf: Vec::with_capacity(INITIAL_BATCH_CAPACITY),
            pending: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::io(format!("spawn wal writer thread for {}", dir.display()), e))?;
        Ok(Wal {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                tx,
                shared,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// Appends one record; resolves once it is durable (written, and fsynced when `opts.fsync`).
    /// Concurrent appends are batched into one write + fsync. Returns the segment number the record
    /// landed in. Records are empty-checked and size-checked (≤ [`MAX_RECORD_SIZE`]) first. Dropping
    /// the future after the first poll does not withdraw the record: it may still be written.
    pub async fn append(&self, record: Vec<u8>) -> Result<u64, Error> {
        check_record(&record)?;
        let crc = crc32c::crc32c(&record);
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Append {
            record,
            crc,
            reply: Reply::Async(tx),
        })?;
        rx.await.map_err(|_| self.closed())?
    }

    /// Same as [`Wal::append`], blocking the calling thread (for non-async callers and tests). Do not
    /// call it on an async runtime thread; use [`Wal::append`] there.
    pub fn append_blocking(&self, record: Vec<u8>) -> Result<u64, Error> {
        check_record(&record)?;
        let crc = crc32c::crc32c(&record);
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Cmd::Append {
            record,
            crc,
            reply: Reply::Blocking(tx),
        })?;
        rx.recv().map_err(|_| self.closed())?
    }

    /// Closes the current segment and starts a new one; returns the new segment number. Records
    /// appended after this call returns land in the new (or a later) segment. Blocks for one fsync
    /// and a file creation; from async code, consider `tokio::task::spawn_blocking`.
    pub fn cut_segment(&self) -> Result<u64, Error> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Cmd::Cut(tx))?;
        rx.recv().map_err(|_| self.closed())?
    }

    /// Deletes all segments with number < `segment` (never the active one).
    pub fn truncate_before(&self, segment: u64) -> Result<(), Error> {
        let dir = &self.inner.dir;
        // The active segment only grows, so anything below the value read here is inactive for good.
        let limit = segment.min(self.inner.shared.active.load(Ordering::Acquire));
        for seg in list_segments(dir)? {
            if seg >= limit {
                break;
            }
            let path = segment_path(dir, seg);
            let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            match fs::remove_file(&path) {
                Ok(()) => {
                    self.inner.shared.disk_size.fetch_sub(len, Ordering::AcqRel);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::io(
                        format!("delete wal segment {}", path.display()),
                        e,
                    ))
                }
            }
        }
        Ok(())
    }

    /// Flushes and fsyncs everything pending, stops the writer thread (used at shutdown; idempotent).
    /// Later appends fail with [`Error::WalClosed`].
    pub fn close(&self) -> Result<(), Error> {
        let (tx, rx) = mpsc::sync_channel(1);
        let result = match self.inner.tx.send(Cmd::Close(tx)) {
            // The writer already stopped: closed before.
            Err(_) => Ok(()),
            Ok(()) => rx.recv().unwrap_or(Ok(())),
        };
        if let Some(handle) = self.inner.thread.lock().take() {
            let _ = handle.join();
        }
        result
    }

    /// Bytes on disk over all segments.
    pub fn disk_size(&self) -> u64 {
        self.inner.shared.disk_size.load(Ordering::Acquire)
    }

    /// The segment appends currently go to.
    pub fn active_segment(&self) -> u64 {
        self.inner.shared.active.load(Ordering::Acquire)
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Number of fsyncs of segment data so far (tests check that group commit batches).
    #[doc(hidden)]
    pub fn sync_count(&self) -> u64 {
        self.inner.shared.syncs.load(Ordering::Acquire)
    }

    fn send(&self, cmd: Cmd) -> Result<(), Error> {
        if self.inner.shared.stopped.load(Ordering::Acquire) {
            return Err(self.closed());
        }
        self.inner.tx.send(cmd).map_err(|_| self.closed())
    }

    fn closed(&self) -> Error {
        Error::WalClosed {
            dir: self.inner.dir.clone(),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping the last handle closes the channel; the writer flushes what it has and exits.
        // Replace the sender so the writer sees the disconnect before we wait for it.
        let (dead, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.tx, dead));
        if let Some(handle) = self.thread.get_mut().take() {
            let _ = handle.join();
        }
    }
}

fn check_record(record: &[u8]) -> Result<(), Error> {
    if record.is_empty() {
        return Err(Error::EmptyRecord);
    }
    if record.len() > MAX_RECORD_SIZE {
        return Err(Error::RecordTooLarge {
            len: record.len(),
            max: MAX_RECORD_SIZE,
        });
    }
    Ok(())
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    opts: WalOptions,
    shared: Arc<Shared>,
    file: File,
    segment: u64,
    /// Bytes written to the current segment.
    written: u64,
    /// A write failed on the current segment; the next write starts a new one.
    broken: bool,
    /// The batch being gathered; reused across batches.
    buf: Vec<u8>,
    /// Callers whose records are in `buf`.
    pending: Vec<Reply<u64>>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        'outer: while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                match cmd {
                    Cmd::Append { record, crc, reply } => self.add(record, crc, reply),
                    Cmd::Cut(reply) => {
                        let r = self.flush().and_then(|_| self.rotate());
                        let _ = reply.send(r.map(|_| self.segment));
                    }
                    Cmd::Close(reply) => {
                        let r = self.flush().and_then(|_| self.sync_segment());
                        self.shared.stopped.store(true, Ordering::Release);
                        let _ = reply.send(r);
                        break 'outer;
                    }
                }
                if self.buf.len() < MAX_BATCH_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            // Nothing more queued (or the batch is full): make it durable and wake its callers.
            let _ = self.flush();
        }
        let _ = self.flush();
        self.shared.stopped.store(true, Ordering::Release);
        // Callers still queued behind a Close get WalClosed when `rx` drops their reply senders.
    }

    fn add(&mut self, record: Vec<u8>, crc: u32, reply: Reply<u64>) {
        let framed = (HEADER_LEN + record.len()) as u64;
        let used = self.written + self.buf.len() as u64;
        if self.broken || (used > 0 && used + framed > self.opts.segment_size) {
            if let Err(e) = self.flush().and_then(|_| self.rotate()) {
                reply.send(Err(e));
                return;
            }
        }
        self.buf
            .extend_from_slice(&(record.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf.extend_from_slice(&record);
        self.pending.push(reply);
    }

    /// Writes and fsyncs the gathered batch, then answers its callers.
    fn flush(&mut self) -> Result<(), Error> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let (dir, seg) = (&self.dir, self.segment);
        let mut result = self.file.write_all(&self.buf).map_err(|e| {
            Error::io(
                format!("write wal segment {}", segment_path(dir, seg).display()),
                e,
            )
        });
        if result.is_ok() && self.opts.fsync {
            result = self.file.sync_data().map_err(|e| {
                Error::io(
                    format!("fsync wal segment {}", segment_path(dir, seg).display()),
                    e,
                )
            });
            self.shared.syncs.fetch_add(1, Ordering::AcqRel);
        }
        match &result {
            Ok(()) => {
                self.written += self.buf.len() as u64;
                self.shared
                    .disk_size
                    .fetch_add(self.buf.len() as u64, Ordering::AcqRel);
                let segment = self.segment;
                for reply in self.pending.drain(..) {
                    reply.send(Ok(segment));
                }
            }
            Err(e) => {
                // Cut off whatever part of the batch reached the file, so that the segment stays a
                // clean sequence of acknowledged records; later records go to a new segment.
                tracing::error!(wal = %self.dir.display(), segment = self.segment, error = %e, "wal write failed");
                let _ = self.file.set_len(self.written);
                self.broken = true;
                for reply in self.pending.drain(..) {
                    reply.send(Err(copy_error(e)));
                }
            }
        }
        self.buf.clear();
        if self.buf.capacity() > 4 * MAX_BATCH_BYTES {
            // A huge record passed through; do not keep its memory for good.
            self.buf = Vec::with_capacity(INITIAL_BATCH_CAPACITY);
        }
        result
    }

    fn sync_segment(&mut self) -> Result<(), Error> {
        if !self.opts.fsync {
            return Ok(());
        }
        self.file.sync_all().map_err(|e| {
            Error::io(
                format!(
                    "fsync wal segment {}",
                    segment_path(&self.dir, self.segment).display()
                ),
                e,
            )
        })
    }

    /// Closes the current segment and starts the next one. Call with an empty batch.
    fn rotate(&mut self) -> Result<(), Error> {
        debug_assert!(self.buf.is_empty());
        if !self.broken {
            self.sync_segment()?;
        }
        let next = self.segment + 1;
        self.file = create_segment(&self.dir, next, self.opts.fsync)?;
        self.segment = next;
        self.written = 0;
        self.broken = false;
        self.shared.active.store(next, Ordering::Release);
        Ok(())
    }
}

/// The same failure for another caller of the batch (`io::Error` is not `Clone`).
fn copy_error(e: &Error) -> Error {
    match e {
        Error::Io { context, source } => Error::Io {
            context: context.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        other => Error::Io {
            context: "wal write".into(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

/// Walks the records of one segment, calling `f` for each intact one. Returns the length of the intact
/// prefix and, when the segment does not end cleanly, why.
fn scan(
    buf: &[u8],
    mut f: impl FnMut(&[u8]) -> Result<(), Error>,
) -> Result<(usize, Option<String>), Error> {
    let mut off = 0;
    while off < buf.len() {
        let rest = &buf[off..];
        if rest.len() < HEADER_LEN {
            return Ok((
                off,
                Some(format!(
                    "torn record header ({} of {HEADER_LEN} bytes)",
                    rest.len()
                )),
            ));
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap_or_default());
        if len == 0 {
            return Ok((off, Some("zero-length record".into())));
        }
        if len > MAX_RECORD_SIZE {
            return Ok((
                off,
                Some(format!("record length {len} exceeds {MAX_RECORD_SIZE}")),
            ));
        }
        if rest.len() - HEADER_LEN < len {
            return Ok((
                off,
                Some(format!(
                    "torn record ({} of {len} payload bytes)",
                    rest.len() - HEADER_LEN
                )),
            ));
        }
        let payload = &rest[HEADER_LEN..HEADER_LEN + len];
        let actual = crc32c::crc32c(payload);
        if actual != crc {
            return Ok((
                off,
                Some(format!(
                    "checksum mismatch (stored {crc:08x}, computed {actual:08x})"
                )),
            ));
        }
        f(payload)?;
        off += HEADER_LEN + len;
    }
    Ok((off, None))
}

fn segment_path(dir: &Path, seg: u64) -> PathBuf {
    dir.join(format!("{seg:08}"))
}

/// Segment numbers in `dir`, ascending; other files are ignored.
fn list_segments(dir: &Path) -> Result<Vec<u64>, Error> {
    let ctx = || format!("list wal dir {}", dir.display());
    let mut segs = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(ctx(), e))? {
        let entry = entry.map_err(|e| Error::io(ctx(), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.len() >= 8 && name.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n) = name.parse::<u64>() {
                segs.push(n);
            }
        }
    }
    segs.sort_unstable();
    Ok(segs)
}

/// Opens segment `seg` for appending (creating it), and makes its directory entry durable.
fn create_segment(dir: &Path, seg: u64, fsync: bool) -> Result<File, Error> {
    let path = segment_path(dir, seg);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(format!("create wal segment {}", path.display()), e))?;
    if fsync {
        sync_dir(dir)?;
    }
    Ok(file)
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("fsync wal dir {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Replayed = Vec<(u64, Vec<u8>)>;

    fn open(dir: &Path, segment_size: u64) -> Result<(Wal, Replayed), Error> {
        let mut got = Vec::new();
        let wal = Wal::open(
            dir,
            WalOptions {
                segment_size,
                fsync: true,
            },
            |seg, rec| {
                got.push((seg, rec.to_vec()));
                Ok(())
            },
        )?;
        Ok((wal, got))
    }

    fn record(i: usize) -> Vec<u8> {
        format!("record-{i:04}-{}", "x".repeat(i % 7)).into_bytes()
    }

    fn segment_files(dir: &Path) -> Vec<u64> {
        list_segments(dir).unwrap()
    }

    #[test]
    fn round_trip_across_segments() {
        let tmp = tempfile::tempdir().unwrap();
        let (wal, got) = open(tmp.path(), 100).unwrap();
        assert!(got.is_empty());
        let mut want = Vec::new();
        for i in 0..50 {
            let seg = wal.append_blocking(record(i)).unwrap();
            want.push((seg, record(i)));
        }
        assert!(
            want.last().unwrap().0 > 5,
            "expected rotation, got {:?}",
            want.last()
        );
        let size = wal.disk_size();
        let on_disk: u64 = segment_files(tmp.path())
            .iter()
            .map(|&s| fs::metadata(segment_path(tmp.path(), s)).unwrap().len())
            .sum();
        assert_eq!(size, on_disk);
        // No segment exceeds the limit (each record is far smaller than it).
        for s in segment_files(tmp.path()) {
            assert!(fs::metadata(segment_path(tmp.path(), s)).unwrap().len() <= 100);
        }
        wal.close().unwrap();
        drop(wal);

        let (wal, got) = open(tmp.path(), 100).unwrap();
        assert_eq!(got, want);
        assert_eq!(wal.disk_size(), size);
        // Appends after replay go to a fresh segment.
        let seg = wal.append_blocking(b"after".to_vec()).unwrap();
        assert_eq!(seg, want.last().unwrap().0 + 1);
    }

    #[test]
    fn torn_tail_is_truncated_and_appends_continue() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (wal, _) = open(dir, 1 << 20).unwrap();
        for i in 0..10 {
            wal.append_blocking(record(i)).unwrap();
        }
        wal.close().unwrap();
        drop(wal);

        // Cut the last 3 bytes of the last record.
        let last = *segment_files(dir).last().unwrap();
        let path = segment_path(dir, last);
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();

        let (wal, got) = open(dir, 1 << 20).unwrap();
        let want: Vec<_> = (0..9).map(|i| (last, record(i))).collect();
        assert_eq!(got, want);
        // The torn record is gone from disk.
        let framed_last = (HEADER_LEN + record(9).len()) as u64;
        assert_eq!(fs::metadata(&path).unwrap().len(), len - framed_last);
        let seg = wal.append_blocking(b"new-1".to_vec()).unwrap();
        assert!(seg > last);
        wal.close().unwrap();
        drop(wal);

        let (wal, got) = open(dir, 1 << 20).unwrap();
        let mut want2 = want.clone();
        want2.push((seg, b"new-1".to_vec()));
        assert_eq!(got, want2);
        wal.close().unwrap();
        drop(wal);

        // Flip a byte in the payload of the last record of the last segment.
        let path = segment_path(dir, seg);
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let (wal, got) = open(dir, 1 << 20).unwrap();
        assert_eq!(got, want);
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
        let seg2 = wal.append_blocking(b"new-2".to_vec()).unwrap();
        wal.close().unwrap();
        drop(wal);
        let (_wal, got) = open(dir, 1 << 20).unwrap();
        let mut want3 = want.clone();
        want3.push((seg2, b"new-2".to_vec()));
        assert_eq!(got, want3);
    }

    #[test]
    fn torn_tail_before_empty_segments_is_repaired() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (wal, _) = open(dir, 1 << 20).unwrap();
        for i in 0..3 {
            wal.append_blocking(record(i)).unwrap();
        }
        wal.close().unwrap();
        drop(wal);
        let last = *segment_files(dir).last().unwrap();
        let path = segment_path(dir, last);
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend_from_slice(&[7, 0, 0]);
        fs::write(&path, &bytes).unwrap();
        // A crash right after rotating leaves empty segments behind the torn one.
        File::create(segment_path(dir, last + 1)).unwrap();
        File::create(segment_path(dir, last + 2)).unwrap();
        let (wal, got) = open(dir, 1 << 20).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(wal.append_blocking(b"x".to_vec()).unwrap(), last + 2);
    }

    #[test]
    fn corruption_in_a_middle_segment_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (wal, _) = open(dir, 64).unwrap();
        for i in 0..20 {
            wal.append_blocking(record(i)).unwrap();
        }
        wal.close().unwrap();
        drop(wal);
        let segs = segment_files(dir);
        assert!(segs.len() >= 3);
        let mid = segs[segs.len() / 2];
        let path = segment_path(dir, mid);
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER_LEN + 2] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        match open(dir, 64) {
            Err(Error::WalCorrupt {
                segment, offset, ..
            }) => {
                assert_eq!(segment, mid);
                assert_eq!(offset, 0);
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("corrupt middle segment accepted"),
        }
        let msg = open(dir, 64).err().unwrap().to_string();
        assert!(
            msg.contains(&format!("{mid:08}")) && msg.contains("checksum"),
            "{msg}"
        );
    }

    #[test]
    fn replay_error_is_returned() {
        let tmp = tempfile::tempdir().unwrap();
        let (wal, _) = open(tmp.path(), 1 << 20).unwrap();
        wal.append_blocking(b"a".to_vec()).unwrap();
        wal.close().unwrap();
        drop(wal);
        let r = Wal::open(tmp.path(), WalOptions::default(), |_, _| {
            Err(Error::InvalidArgument("bad record".into()))
        });
        assert!(matches!(r, Err(Error::InvalidArgument(_))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_are_all_durable() {
        let tmp = tempfile::tempdir().unwrap();
        let (wal, _) = open(tmp.path(), 4096).unwrap();
        let mut tasks = Vec::new();
        for t in 0..8 {
            let wal = wal.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..200 {
                    wal.append(format!("{t}-{i}").into_bytes()).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        wal.close().unwrap();
        drop(wal);
        let (_wal, got) = open(tmp.path(), 4096).unwrap();
        let mut got: Vec<String> = got
            .into_iter()
            .map(|(_, r)| String::from_utf8(r).unwrap())
            .collect();
        assert_eq!(got.len(), 1600);
        // Each task's records are in its order.
        for t in 0..8 {
            let prefix = format!("{t}-");
            let mine: Vec<_> = got
                .iter()
                .filter(|r| r.starts_with(&prefix))
                .cloned()
                .collect();
            let want: Vec<_> = (0..200).map(|i| format!("{t}-{i}")).collect();
            assert_eq!(mine, want);
        }
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 1600);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_commit_batches_fsyncs() {
        let tmp = tempfile::tempdir().unwrap();
        let (wal, _) = open(tmp.path(), 64 << 20).unwrap();
        let before = wal.sync_count();
        let appends = (0..1000).map(|i| wal.append(record(i)));
        let segs = futures::future::try_join_all(appends).await.unwrap();
        assert_eq!(segs.len(), 1000);
        let syncs = wal.sync_count() - before;
        eprintln!("1000 concurrent appends: {syncs} fsyncs");
        assert!(
            (1..=50).contains(&syncs),
            "1000 appends took {syncs} fsyncs"
        );
        wal.close().unwrap();
        drop(wal);
        let (_wal, got) = open(tmp.path(), 64 << 20).unwrap();
        assert_eq!(got.len(), 1000);
    }

    #[test]
    fn cut_segment_and_truncate_before() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (wal, _) = open(dir, 1 << 20).unwrap();
        let first = wal.append_blocking(b"one".to_vec()).unwrap();
        let second = wal.cut_segment().unwrap();
        assert_eq!(second, first + 1);
        assert_eq!(wal.append_blocking(b"two".to_vec()).unwrap(), second);
        let third = wal.cut_segment().unwrap();
        assert_eq!(wal.append_blocking(b"three".to_vec()).unwrap(), third);
        assert_eq!(wal.active_segment(), third);
        let size = wal.disk_size();

        wal.truncate_before(third).unwrap();
        assert_eq!(segment_files(dir), vec![third]);
        assert_eq!(wal.disk_size(), size - 2 * (HEADER_LEN as u64) - 6);
        // Never the active segment.
        wal.truncate_before(u64::MAX).unwrap();
        assert_eq!(segment_files(dir), vec![third]);
        assert_eq!(wal.append_blocking(b"four".to_vec()).unwrap(), third);
        wal.close().unwrap();
        drop(wal);
        let (_wal, got) = open(dir, 1 << 20).unwrap();
        assert_eq!(
            got,
            vec![(third, b"three".to_vec()), (third, b"four".to_vec())]
        );
    }

    #[tokio::test]
    async fn close_is_idempotent_and_later_appends_fail() {
        let tmp = tempfile::tempdir().unwrap();
        let (wal, _) = open(tmp.path(), 1 << 20).unwrap();
        wal.append(b"a".to_vec()).await.unwrap();
        wal.close().unwrap();
        wal.close().unwrap();
        assert!(matches!(
            wal.append(b"b".to_vec()).await,
            Err(Error::WalClosed { .. })
        ));
        assert!(matches!(
            wal.append_blocking(b"b".to_vec()),
            Err(Error::WalClosed { .. })
        ));
        assert!(matches!(wal.cut_segment(), Err(Error::WalClosed { .. })));
        let clone = wal.clone();
        clone.close().unwrap();
        drop(wal);
        drop(clone);
        let (_wal, got) = open(tmp.path(), 1 << 20).unwrap();
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn drop_without_close_flushes() {
        let tmp = tempfile::tempdir().unwrap();
        let (wal, _) = open(tmp.path(), 1 << 20).unwrap();
        wal.append_blocking(b"a".to_vec()).unwrap();
        drop(wal);
        let (_wal, got) = open(tmp.path(), 1 << 20).unwrap();
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn bad_records_are_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let (wal, _) = open(tmp.path(), 1 << 20).unwrap();
        let big = vec![0u8; MAX_RECORD_SIZE + 1];
        let err = wal.append_blocking(big).unwrap_err();
        assert!(matches!(err, Error::RecordTooLarge { .. }), "{err}");
        assert!(err.to_string().contains("268435457"), "{err}");
        assert!(matches!(
            wal.append_blocking(Vec::new()),
            Err(Error::EmptyRecord)
        ));
        // The WAL is still usable.
        wal.append_blocking(b"ok".to_vec()).unwrap();
    }

    #[test]
    fn oversized_record_gets_its_own_segment() {
        let tmp = tempfile::tempdir().unwrap();
        let (wal, _) = open(tmp.path(), 32).unwrap();
        let a = wal.append_blocking(b"small".to_vec()).unwrap();
        let b = wal.append_blocking(vec![1u8; 100]).unwrap();
        let c = wal.append_blocking(b"small".to_vec()).unwrap();
        assert_eq!((b, c), (a + 1, a + 2));
    }

    #[test]
    fn without_fsync() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            segment_size: 1 << 20,
            fsync: false,
        };
        let wal = Wal::open(tmp.path(), opts.clone(), |_, _| Ok(())).unwrap();
        wal.append_blocking(b"a".to_vec()).unwrap();
        assert_eq!(wal.sync_count(), 0);
        wal.close().unwrap();
        drop(wal);
        let mut n = 0;
        Wal::open(tmp.path(), opts, |_, _| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 1);
    }

    const CRASH_DIR_ENV: &str = "HEIMDALL_WAL_CRASH_CHILD_DIR";

    /// The child half of `kill_9_loses_nothing_acknowledged`: appends from 4 threads forever,
    /// printing every acknowledged record. Does nothing when run normally.
    #[test]
    fn crash_child() {
        let Some(dir) = std::env::var_os(CRASH_DIR_ENV) else {
            return;
        };
        let (wal, _) = open(Path::new(&dir), 4096).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let wal = wal.clone();
                std::thread::spawn(move || {
                    for i in 0.. {
                        let rec = format!("{t}-{i}");
                        wal.append_blocking(rec.clone().into_bytes()).unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ack {rec}").unwrap();
                        out.flush().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            let _ = t.join();
        }
    }

    #[test]
    fn kill_9_loses_nothing_acknowledged() {
        use std::io::BufRead;
        let tmp = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "wal::tests::crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_DIR_ENV, tmp.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acked = Vec::new();
        while acked.len() < 2000 {
            match lines.next() {
                Some(line) => {
                    if let Some(rec) = line.unwrap().strip_prefix("ack ") {
                        acked.push(rec.to_string());
                    }
                }
                None => panic!("crash child exited early after {} acks", acked.len()),
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Acks printed before the kill count too.
        for line in lines {
            if let Some(rec) = line.unwrap().strip_prefix("ack ") {
                acked.push(rec.to_string());
            }
        }
        let (_wal, got) = open(tmp.path(), 4096).unwrap();
        let got: std::collections::HashSet<String> = got
            .into_iter()
            .map(|(_, r)| String::from_utf8(r).unwrap())
            .collect();
        let lost: Vec<_> = acked.iter().filter(|r| !got.contains(*r)).collect();
        assert!(
            lost.is_empty(),
            "{} acknowledged records lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
    }
}
