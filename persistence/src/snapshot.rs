//! Snapshots of the whole engine state in a redb database, each keyed by the
//! journal LSN it covers. A snapshot is written in one redb transaction, so a
//! snapshot that exists is complete; the newest wins. Older ones are pruned
//! past a retention count.

use std::path::{Path, PathBuf};

use pat_engine::ExchangeState;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use thiserror::Error;

const SNAPSHOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshots");

/// Version byte in front of every encoded snapshot.
const SNAPSHOT_VERSION: u8 = 1;

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
    db: Database,
    path: PathBuf,
}

impl SnapshotStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, SnapshotError> {
        let db = Database::create(path).map_err(|e| store(path, e))?;
        Ok(Self { db, path: path.to_owned() })
    }

    /// Writes the state covering the journal through `lsn` and keeps the
    /// newest `retain` snapshots. Durable when it returns.
    pub fn write(&self, lsn: u64, state: &ExchangeState, retain: usize) -> Result<(), SnapshotError> {
        let mut bytes = vec![SNAPSHOT_VERSION];
        bytes.extend(postcard::to_stdvec(state).map_err(|e| store(&self.path, e))?);
        let tx = self.db.begin_write().map_err(|e| store(&self.path, e))?;
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
        let tx = self.db.begin_read().map_err(|e| store(&self.path, e))?;
        let table = match tx.open_table(SNAPSHOTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(store(&self.path, e)),
        };
        let keys = table.iter().map_err(|e| store(&self.path, e))?.map(|r| r.map(|(k, _)| k.value()));
        keys.collect::<Result<_, _>>().map_err(|e| store(&self.path, e))
    }

    /// The newest snapshot and the LSN it covers.
    pub fn latest(&self) -> Result<Option<(u64, ExchangeState)>, SnapshotError> {
        let tx = self.db.begin_read().map_err(|e| store(&self.path, e))?;
        let table = match tx.open_table(SNAPSHOTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(store(&self.path, e)),
        };
        let Some(entry) = table.last().map_err(|e| store(&self.path, e))? else {
            return Ok(None);
        };
        let (lsn, bytes) = (entry.0.value(), entry.1.value());
        let decode = |reason: String| SnapshotError::Decode { lsn, reason };
        match bytes.split_first() {
            Some((&SNAPSHOT_VERSION, body)) => {
                postcard::from_bytes(body).map(|s| Some((lsn, s))).map_err(|e| decode(e.to_string()))
            }
            Some((v, _)) => Err(decode(format!("unknown snapshot version {v}"))),
            None => Err(decode("empty snapshot".into())),
        }
    }
}

fn store(path: &Path, e: impl std::fmt::Display) -> SnapshotError {
    SnapshotError::Store { path: path.to_owned(), reason: e.to_string() }
}
