//! The journal writer: one thread that takes records from a bounded channel,
//! writes every record waiting as one group, calls `fdatasync`, and only then
//! tells each waiter its record is durable (group commit). Nothing else in the
//! engine calls fsync on the journal.
//!
//! A failed write or sync (or a new file that could not be started) never
//! reports "durable": the group's waiters get the error, and the journal
//! refuses every later append (poisoned). After a failed write or sync the
//! file is cut back to its last durable length: after a failed `fdatasync`
//! the kernel may have dropped the pages or may still serve them, and a
//! recovery must not find records reported as failed. Either way the
//! appender made the failed records' changes in memory and may have queued
//! records that depend on them, so nothing may follow them into the file:
//! the owner restarts and recovers from what is on disk, with a new journal
//! (a full disk may have drained by then).

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use thiserror::Error;
use tokio::sync::oneshot;

use crate::frame;

/// Bounds and cadence of the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    pub dir: PathBuf,
    /// A new file is started once the current one reaches this size, bytes.
    pub file_bytes_max: u64,
    /// Most records written and synced as one group.
    pub group_records_max: usize,
    /// Records that may wait for the writer; past it appends fail with `Busy`.
    pub queue_records_max: usize,
}

impl JournalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), file_bytes_max: 64 << 20, group_records_max: 4096, queue_records_max: 65_536 }
    }
}

/// Why an append is not durable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JournalError {
    #[error("journal queue is full ({0} records waiting): busy, retry later")]
    Busy(usize),
    #[error("record of {0} bytes exceeds the journal's limit of {max}", max = frame::PAYLOAD_MAX)]
    TooLarge(usize),
    #[error("journal write failed, record not durable: {0}")]
    Write(String),
    #[error("journal is poisoned by an earlier failed write or sync; restart to recover: {0}")]
    Poisoned(String),
    #[error("journal writer has stopped")]
    Closed,
    #[error("journal I/O on {path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

/// The name of the file whose first record is `first_lsn`.
pub fn file_name(first_lsn: u64) -> String {
    format!("journal-{first_lsn:020}.log")
}

/// The first LSN named by a journal file name.
pub fn parse_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("journal-")?.strip_suffix(".log")?.parse().ok()
}

struct Request {
    payload: Vec<u8>,
    done: oneshot::Sender<Result<u64, JournalError>>,
}

/// A handle that resolves to the record's LSN once it is durable.
pub struct Durable(oneshot::Receiver<Result<u64, JournalError>>);

impl Durable {
    /// Blocks until the record is durable (not from inside an async runtime).
    pub fn wait(self) -> Result<u64, JournalError> {
        self.0.blocking_recv().unwrap_or(Err(JournalError::Closed))
    }
}

impl Future for Durable {
    type Output = Result<u64, JournalError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| r.unwrap_or(Err(JournalError::Closed)))
    }
}

/// Counters of what the writer has made durable.
#[derive(Debug, Default)]
pub struct JournalStats {
    /// Groups written and synced (one `fdatasync` each).
    pub groups: AtomicU64,
    pub records: AtomicU64,
    /// Bytes written, frames included.
    pub bytes: AtomicU64,
    /// The LSN of the newest durable record (0: none ever).
    pub durable_lsn: AtomicU64,
}

/// The append side of the journal. Cheap to share: appends from any thread.
pub struct Journal {
    tx: Option<Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    queue_max: usize,
    poisoned: Arc<AtomicBool>,
    stats: Arc<JournalStats>,
}

impl Journal {
    /// Starts the writer; the first record appended gets `next_lsn`. Always
    /// begins a new file, so recovery never has to append into a file it cut.
    pub fn open(cfg: JournalConfig, next_lsn: u64) -> Result<Self, JournalError> {
        let io = |path: &Path, e: std::io::Error| JournalError::Io { path: path.to_owned(), reason: e.to_string() };
        std::fs::create_dir_all(&cfg.dir).map_err(|e| io(&cfg.dir, e))?;
        let file = Writer::create_file(&cfg.dir, next_lsn)?;
        let (tx, rx) = crossbeam_channel::bounded(cfg.queue_records_max);
        let poisoned = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(JournalStats::default());
        // Everything before `next_lsn` is durable already (recovery read it back).
        stats.durable_lsn.store(next_lsn - 1, Ordering::Release);
        let mut writer = Writer {
            stats: stats.clone(),
            durable_len: frame::FILE_HEADER_LEN as u64,
            file,
            next_lsn,
            poisoned: poisoned.clone(),
            poison_reason: String::new(),
            buf: Vec::with_capacity(1 << 20),
            cfg: cfg.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| io(&cfg.dir, e))?;
        Ok(Self { tx: Some(tx), writer: Some(handle), queue_max: cfg.queue_records_max, poisoned, stats })
    }

    /// Queues a record whose payload is an encoding of [`crate::codec::SCHEMA_VERSION`]
    /// (as [`crate::codec::encode_event`] makes); the returned handle resolves
    /// once it is durable.
    pub fn append(&self, payload: Vec<u8>) -> Result<Durable, JournalError> {
        if payload.len() > frame::PAYLOAD_MAX {
            return Err(JournalError::TooLarge(payload.len()));
        }
        if self.poisoned.load(Ordering::Acquire) {
            return Err(JournalError::Poisoned("an earlier write or fdatasync failed".into()));
        }
        let (done, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(JournalError::Closed)?;
        match tx.try_send(Request { payload, done }) {
            Ok(()) => Ok(Durable(rx)),
            Err(TrySendError::Full(_)) => Err(JournalError::Busy(self.queue_max)),
            Err(TrySendError::Disconnected(_)) => Err(JournalError::Closed),
        }
    }

    /// Whether `records` more appends would be queued now. Appenders that
    /// take turns under one lock ask before a change of `records` events.
    pub fn has_room(&self, records: usize) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.len() + records <= self.queue_max)
    }

    /// Encodes an engine event and appends it.
    pub fn append_event(&self, event: &pat_engine::Event) -> Result<Durable, JournalError> {
        self.append(crate::codec::encode_event(event))
    }

    /// What the writer has made durable so far.
    pub fn stats(&self) -> &JournalStats {
        &self.stats
    }

    /// Whether a failed write or sync has stopped the journal.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }
}

impl Drop for Journal {
    /// Lets the writer finish what is queued, then joins it.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

struct Writer {
    cfg: JournalConfig,
    stats: Arc<JournalStats>,
    file: File,
    /// Length of the current file that is known durable.
    durable_len: u64,
    next_lsn: u64,
    poisoned: Arc<AtomicBool>,
    poison_reason: String,
    buf: Vec<u8>,
}

impl Writer {
    fn create_file(dir: &Path, first_lsn: u64) -> Result<File, JournalError> {
        let path = dir.join(file_name(first_lsn));
        let io = |e: std::io::Error| JournalError::Io { path: path.clone(), reason: e.to_string() };
        let mut file = OpenOptions::new().create(true).truncate(true).write(true).open(&path).map_err(io)?;
        file.write_all(&frame::file_header(first_lsn)).map_err(io)?;
        file.sync_data().map_err(io)?;
        // The new name must be durable too: sync the directory.
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(file)
    }

    fn run(&mut self, rx: Receiver<Request>) {
        let mut group: Vec<Request> = Vec::with_capacity(self.cfg.group_records_max);
        while let Ok(first) = rx.recv() {
            group.push(first);
            while group.len() < self.cfg.group_records_max {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            let outcome = self.commit(&group);
            for (i, r) in group.drain(..).enumerate() {
                let _ = r.done.send(outcome.as_ref().map(|first| first + i as u64).map_err(Clone::clone));
            }
        }
    }

    /// Writes and syncs one group; returns the LSN of its first record.
    fn commit(&mut self, group: &[Request]) -> Result<u64, JournalError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(JournalError::Poisoned(self.poison_reason.clone()));
        }
        if self.durable_len >= self.cfg.file_bytes_max {
            // Poisoned too: the appender counted this group's LSNs, so no
            // later group may be written under them.
            self.file = Self::create_file(&self.cfg.dir, self.next_lsn)
                .inspect_err(|e| self.poison(format!("a new journal file could not be started: {e}")))?;
            self.durable_len = frame::FILE_HEADER_LEN as u64;
        }
        let first = self.next_lsn;
        self.buf.clear();
        for (i, r) in group.iter().enumerate() {
            frame::encode(&mut self.buf, first + i as u64, crate::codec::SCHEMA_VERSION, &r.payload);
        }
        if let Err(e) = self.file.write_all(&self.buf) {
            return Err(self.fail_group(format!("write: {e}")));
        }
        if let Err(e) = self.file.sync_data() {
            // The pages may still be readable: a recovery in this process
            // must not find records whose waiters were told they failed.
            return Err(self.fail_group(format!("fdatasync: {e}")));
        }
        self.durable_len += self.buf.len() as u64;
        self.next_lsn += group.len() as u64;
        self.stats.groups.fetch_add(1, Ordering::Relaxed);
        self.stats.records.fetch_add(group.len() as u64, Ordering::Relaxed);
        self.stats.bytes.fetch_add(self.buf.len() as u64, Ordering::Relaxed);
        self.stats.durable_lsn.store(self.next_lsn - 1, Ordering::Release);
        Ok(first)
    }

    /// Cuts the failed group off, so the file ends on its last durable
    /// record, and poisons the journal.
    fn fail_group(&mut self, reason: String) -> JournalError {
        let len = self.durable_len;
        let cut_back = self.file.set_len(len).and_then(|()| self.file.seek(SeekFrom::Start(len))).map(|_| ());
        match cut_back.and_then(|()| self.file.sync_data()) {
            Ok(()) => self.poison(reason.clone()),
            Err(cut) => self.poison(format!("{reason}, and the file could not be cut back ({cut})")),
        }
        JournalError::Write(reason)
    }

    fn poison(&mut self, reason: String) {
        self.poison_reason = reason;
        self.poisoned.store(true, Ordering::Release);
    }
}
