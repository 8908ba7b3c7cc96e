//! A data directory (`journal/` and `snapshots.redb`) and crash recovery:
//! the newest snapshot, then every journal record after it, applied in LSN
//! order. Start-up and crash recovery are the same path.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pat_engine::{ApplyError, EngineConfig, EngineState, Snapshot};
use thiserror::Error;

use crate::journal::{Journal, JournalConfig, JournalError};
use crate::reader::{self, ReadError, TornTail};
use crate::snapshot::{SnapshotError, SnapshotStore};

/// Why the state could not be rebuilt. Start-up stops on any of these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("{path}: record at offset {offset} has LSN {found}, but LSN {expected} comes next{}", if *.snapshot_lsn > 0 { format!(" after the snapshot at LSN {}", .snapshot_lsn) } else { " and there is no snapshot".into() })]
    Gap { path: PathBuf, offset: u64, expected: u64, found: u64, snapshot_lsn: u64 },
    #[error("{path}: record at offset {offset} (LSN {lsn}) cannot be decoded: {reason}")]
    Decode { path: PathBuf, offset: u64, lsn: u64, reason: String },
    #[error("{path}: record at offset {offset} (LSN {lsn}) does not fit the state: {source}")]
    Apply { path: PathBuf, offset: u64, lsn: u64, source: ApplyError },
    #[error("cannot cut the torn tail of {path} at {offset}: {reason}")]
    CutTail { path: PathBuf, offset: u64, reason: String },
}

/// The rebuilt state and where the journal goes on.
pub struct Recovered {
    pub books: EngineState,
    /// The LSN the next appended record must get.
    pub next_lsn: u64,
    /// LSN covered by the snapshot recovery started from (0: none).
    pub snapshot_lsn: u64,
    /// Journal records applied after the snapshot.
    pub replayed: u64,
    /// A torn final record that was cut off, if any.
    pub torn: Option<TornTail>,
}

/// What a snapshot write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotReport {
    pub lsn: u64,
    pub bytes: usize,
    /// Journal files deleted because retained snapshots cover them.
    pub removed_files: Vec<PathBuf>,
}

/// The engine's data directory.
pub struct DataDir {
    root: PathBuf,
    snapshots: SnapshotStore,
}

impl DataDir {
    /// Opens (creating if needed) the data directory at `root`.
    pub fn open(root: &Path) -> Result<Self, RecoveryError> {
        std::fs::create_dir_all(root.join("journal"))
            .map_err(|e| RecoveryError::Read(ReadError::Io { path: root.join("journal"), reason: e.to_string() }))?;
        Ok(Self { root: root.to_owned(), snapshots: SnapshotStore::open(&root.join("snapshots.redb"))? })
    }

    pub fn journal_dir(&self) -> PathBuf {
        self.root.join("journal")
    }

    pub fn snapshots(&self) -> &SnapshotStore {
        &self.snapshots
    }

    /// Rebuilds the engine: newest snapshot (or an empty exchange with
    /// `initial`), then the journal after it. A torn final record is cut off.
    pub fn recover(&self, initial: &Arc<EngineConfig>) -> Result<Recovered, RecoveryError> {
        let recovered = self.replay(initial, u64::MAX)?;
        if let Some(t) = &recovered.torn {
            cut_tail(t)?;
        }
        Ok(recovered)
    }

    /// The state as of LSN `through`, read while the journal may be written:
    /// the newest snapshot, then the journal records after it up to `through`,
    /// which must be durable. Changes nothing on disk. How a crashed market
    /// actor gets its market back.
    pub fn replay_through(&self, initial: &Arc<EngineConfig>, through: u64) -> Result<EngineState, RecoveryError> {
        Ok(self.replay(initial, through)?.books)
    }

    fn replay(&self, initial: &Arc<EngineConfig>, through: u64) -> Result<Recovered, RecoveryError> {
        let (snapshot_lsn, mut books) = match self.snapshots.latest()? {
            Some((lsn, state)) => (lsn, EngineState::from_snapshot(state)),
            None => (0, EngineState::new(initial.clone())),
        };
        let (mut next, mut replayed, mut last_seen) = (snapshot_lsn + 1, 0u64, 0u64);
        let end = reader::walk(&self.journal_dir(), |r| {
            last_seen = last_seen.max(r.lsn);
            if r.lsn <= snapshot_lsn || r.lsn > through {
                return Ok(());
            }
            let at = |path: &Path| (path.to_owned(), r.offset);
            if r.lsn != next {
                let (path, offset) = at(r.path);
                return Err(RecoveryError::Gap { path, offset, expected: next, found: r.lsn, snapshot_lsn });
            }
            let event = crate::codec::decode_event(r.version, r.payload).map_err(|e| {
                let (path, offset) = at(r.path);
                RecoveryError::Decode { path, offset, lsn: r.lsn, reason: e.to_string() }
            })?;
            books.apply(event).map_err(|source| {
                let (path, offset) = at(r.path);
                RecoveryError::Apply { path, offset, lsn: r.lsn, source }
            })?;
            next += 1;
            replayed += 1;
            Ok(())
        })?;
        Ok(Recovered { books, next_lsn: next.max(last_seen + 1), snapshot_lsn, replayed, torn: end.torn })
    }

    /// Starts the journal writer after recovery.
    pub fn open_journal(&self, mut cfg: JournalConfig, next_lsn: u64) -> Result<Journal, JournalError> {
        cfg.dir = self.journal_dir();
        Journal::open(cfg, next_lsn)
    }

    /// Writes a snapshot of `state` covering the journal through `lsn`, keeps
    /// the newest `retain` snapshots, and deletes journal files that the
    /// oldest retained snapshot covers entirely.
    pub fn write_snapshot(&self, lsn: u64, state: &Snapshot, retain: usize) -> Result<SnapshotReport, RecoveryError> {
        self.snapshots.write(lsn, state, retain)?;
        let bytes = crate::codec::snapshot_len(state);
        let oldest = self.snapshots.lsns()?.first().copied().unwrap_or(0);
        let files = reader::journal_files(&self.journal_dir())?;
        let mut removed_files = Vec::new();
        for pair in files.windows(2) {
            let ((_, path), (next_first, _)) = (&pair[0], &pair[1]);
            if *next_first <= oldest + 1 {
                std::fs::remove_file(path)
                    .map_err(|e| RecoveryError::Read(ReadError::Io { path: path.clone(), reason: e.to_string() }))?;
                removed_files.push(path.clone());
            }
        }
        Ok(SnapshotReport { lsn, bytes, removed_files })
    }
}

fn cut_tail(t: &TornTail) -> Result<(), RecoveryError> {
    let fail =
        |e: std::io::Error| RecoveryError::CutTail { path: t.path.clone(), offset: t.offset, reason: e.to_string() };
    if t.offset == 0 {
        // The newest file never got its header: nothing in it was written.
        return std::fs::remove_file(&t.path).map_err(fail);
    }
    let file = OpenOptions::new().write(true).open(&t.path).map_err(fail)?;
    file.set_len(t.offset).map_err(fail)?;
    file.sync_data().map_err(fail)
}
