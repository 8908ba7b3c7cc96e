//! Snapshots of the whole engine state in a redb database, each keyed by the
//! journal LSN it covers. A snapshot is written in one redb transaction, so a
//! snapshot that exists is complete; the newest wins. Older ones are pruned
//! past a retention count.

use std::path::{Path, PathBuf};

use pat_engine::Snapshot;
use redb::{Database, ReadOnlyDatabase, ReadableDatabase, ReadableTable, TableDefinition};
use thiserror::Error;

const SNAPSHOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshots");

/// Why a snapshot could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnapshotError {
    #[error("snapshot store {path}: {reason}")]
    Store { path: PathBuf, reason: String },
    #[error("snapshot at LSN {lsn} cannot be decoded: {reason}")]
    Decode { lsn: u64, reason: String },
}

/// The snapshot database.
pub struct SnapshotStore {
    db: Db,
    path: PathBuf,
}

/// The store opened for writing (the engine), or for reading only (an
/// operator's inspection, which must never change a data directory).
enum Db {
    Write(Database),
    Read(ReadOnlyDatabase),
}

impl SnapshotStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, SnapshotError> {
        let db = Database::create(path).map_err(|e| store(path, e))?;
        Ok(Self { db: Db::Write(db), path: path.to_owned() })
    }

    /// Opens an existing store without ever writing to its file; [`Self::write`]
    /// is refused.
    pub fn open_read_only(path: &Path) -> Result<Self, SnapshotError> {
        let db = ReadOnlyDatabase::open(path).map_err(|e| store(path, e))?;
        Ok(Self { db: Db::Read(db), path: path.to_owned() })
    }

    fn readable(&self) -> &dyn ReadableDatabase {
        match &self.db {
            Db::Write(db) => db,
            Db::Read(db) => db,
        }
    }

    /// Writes the state covering the journal through `lsn` and keeps the
    /// newest `retain` snapshots. Durable when it returns.
    pub fn write(&self, lsn: u64, state: &Snapshot, retain: usize) -> Result<(), SnapshotError> {
        let Db::Write(db) = &self.db else {
            return Err(store(&self.path, "opened read-only"));
        };
        let bytes = crate::codec::encode_snapshot(state);
        let tx = db.begin_write().map_err(|e| store(&self.path, e))?;
        {
            let mut table = tx.open_table(SNAPSHOTS).map_err(|e| store(&self.path, e))?;
            table.insert(lsn, bytes.as_slice()).map_err(|e| store(&self.path, e))?;
            let keys: Vec<u64> = table
                .iter()
                .map_err(|e| store(&self.path, e))?
                .map(|r| r.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()
                .map_err(|e| store(&self.path, e))?;
            for old in keys.iter().rev().skip(retain.max(1)) {
                table.remove(old).map_err(|e| store(&self.path, e))?;
            }
        }
        tx.commit().map_err(|e| store(&self.path, e))
    }

    /// LSNs of the stored snapshots, oldest first.
    pub fn lsns(&self) -> Result<Vec<u64>, SnapshotError> {
        let tx = self.readable().begin_read().map_err(|e| store(&self.path, e))?;
        let table = match tx.open_table(SNAPSHOTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(store(&self.path, e)),
        };
        let keys = table.iter().map_err(|e| store(&self.path, e))?.map(|r| r.map(|(k, _)| k.value()));
        keys.collect::<Result<_, _>>().map_err(|e| store(&self.path, e))
    }

    /// The newest snapshot and the LSN it covers.
    pub fn latest(&self) -> Result<Option<(u64, Snapshot)>, SnapshotError> {
        let tx = self.readable().begin_read().map_err(|e| store(&self.path, e))?;
        let table = match tx.open_table(SNAPSHOTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(store(&self.path, e)),
        };
        let Some(entry) = table.last().map_err(|e| store(&self.path, e))? else {
            return Ok(None);
        };
        let (lsn, bytes) = (entry.0.value(), entry.1.value());
        crate::codec::decode_snapshot(bytes)
            .map(|state| Some((lsn, state)))
            .map_err(|e| SnapshotError::Decode { lsn, reason: e.to_string() })
    }
}

fn store(path: &Path, e: impl std::fmt::Display) -> SnapshotError {
    SnapshotError::Store { path: path.to_owned(), reason: e.to_string() }
}
