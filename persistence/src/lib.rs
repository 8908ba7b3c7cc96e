//! # pat-persistence: nothing acknowledged is ever lost
//!
//! Owns the engine's durability: the append-only journal of
//! [`pat_engine::Event`]s, the redb snapshots of the whole state, and recovery,
//! which rebuilds the state from the newest snapshot and the journal after it.
//! The runtime acknowledges an order only once its fill's record is durable.
//!
//! ## Layout
//!
//! - [`codec`]: versioned encodings of events and snapshots, read forever.
//! - [`frame`]: the on-disk record frame (length, CRC32C, version, LSN).
//! - [`journal`]: the group-commit writer thread and the `Durable` handle.
//! - [`reader`]: reading files back, torn-tail and corruption detection.
//! - [`snapshot`]: the redb snapshot store.
//! - [`recovery`]: the data directory and crash recovery.
//!
//! Invariants: only the journal writer calls `fdatasync` on journal files; a
//! waiter is told "durable" only after its group's `fdatasync` returned; a
//! bad record before the tail stops recovery with its file and offset.

pub mod codec;
pub mod frame;
pub mod journal;
pub mod reader;
pub mod recovery;
pub mod snapshot;

pub use codec::{DecodeError, SCHEMA_VERSION, decode_event, encode_event};
pub use journal::{Durable, Journal, JournalConfig, JournalError, JournalStats};
pub use recovery::{DataDir, Recovered, RecoveryError, SnapshotReport};
