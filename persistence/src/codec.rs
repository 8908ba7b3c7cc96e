//! Versioned encodings: how journal records ([`Event`]) and snapshots
//! ([`Snapshot`]) become bytes, and how bytes of every version ever
//! written become today's types again.
//!
//! Every record frame and every snapshot carries the schema version of its
//! payload. This build writes [`SCHEMA_VERSION`] and reads every version from
//! 1 up to it, upgrading older shapes on read, so an engine upgraded in place
//! starts on its own data directory. A version newer than this build is
//! refused with a message that says so, never guessed at.
//!
//! The rule for a change of shape (docs/decisions.md, "Versioned encodings"):
//! any change to a type reachable from `Event` or `Snapshot` (a field, a
//! variant, a config key, a reorder) bumps [`SCHEMA_VERSION`]; the old shape
//! is copied into the module of the version that wrote it, with a conversion
//! into today's type, and that version's decoder goes through it. Two tests
//! hold the rule: `persistence/tests/encodings.rs` compares the traced shape
//! of today's types with the golden file of [`SCHEMA_VERSION`], and recovers
//! the committed data directory of every older version.

use pat_engine::{Event, Snapshot};
use thiserror::Error;

/// The schema version this build writes.
pub const SCHEMA_VERSION: u8 = 1;

/// Why bytes are not a value of any version this build reads.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("schema version {found} is newer than this build reads (1 to {SCHEMA_VERSION}): run the newer engine")]
    Newer { found: u8 },
    #[error("schema version 0 was never written")]
    Zero,
    #[error("schema version {version}: {reason}")]
    Malformed { version: u8, reason: String },
    #[error("empty snapshot")]
    Empty,
}

/// Encodes an event as a journal payload of [`SCHEMA_VERSION`].
pub fn encode_event(event: &Event) -> Vec<u8> {
    postcard::to_stdvec(event).expect("events encode: no maps with non-string keys, no unsized data")
}

/// Decodes a journal payload written at schema `version`.
pub fn decode_event(version: u8, payload: &[u8]) -> Result<Event, DecodeError> {
    let malformed = |e: postcard::Error| DecodeError::Malformed { version, reason: e.to_string() };
    match version {
        0 => Err(DecodeError::Zero),
        1 => v1::event(payload).map_err(malformed),
        found => Err(DecodeError::Newer { found }),
    }
}

/// Encodes a snapshot: its schema version, then the state.
pub fn encode_snapshot(state: &Snapshot) -> Vec<u8> {
    let mut bytes = vec![SCHEMA_VERSION];
    postcard::to_io(state, &mut bytes).expect("a snapshot encodes: no maps with non-string keys, no unsized data");
    bytes
}

/// Decodes a snapshot of any schema version up to [`SCHEMA_VERSION`].
pub fn decode_snapshot(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    let malformed = |e: postcard::Error| DecodeError::Malformed { version, reason: e.to_string() };
    match version {
        0 => Err(DecodeError::Zero),
        1 => v1::snapshot(body).map_err(malformed),
        found => Err(DecodeError::Newer { found }),
    }
}

/// Bytes a snapshot of `state` takes, version byte included.
pub fn snapshot_len(state: &Snapshot) -> usize {
    1 + postcard::experimental::serialized_size(state).unwrap_or(0)
}

/// Schema version 1, written from 2026-12 (issue 12). Today's types still have
/// exactly its shapes (the golden file `tests/golden/schema-v1.json` says so),
/// so it decodes straight into them. When a shape changes, the old shape moves
/// here and these functions decode it and convert.
mod v1 {
    use super::{Event, Snapshot};

    pub(super) fn event(payload: &[u8]) -> Result<Event, postcard::Error> {
        postcard::from_bytes(payload)
    }

    pub(super) fn snapshot(body: &[u8]) -> Result<Snapshot, postcard::Error> {
        postcard::from_bytes(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_outside_the_readable_range_are_refused_by_name() {
        let payload = encode_event(&Event::PauseSet { paused: true });
        assert_eq!(decode_event(1, &payload), Ok(Event::PauseSet { paused: true }));
        assert_eq!(decode_event(0, &payload), Err(DecodeError::Zero));
        assert_eq!(decode_event(SCHEMA_VERSION + 1, &payload), Err(DecodeError::Newer { found: SCHEMA_VERSION + 1 }));
        let newer = DecodeError::Newer { found: 9 }.to_string();
        assert!(newer.contains("newer than this build reads"), "{newer}");
        assert!(matches!(decode_event(1, &[0xff, 0xff]), Err(DecodeError::Malformed { version: 1, .. })));
        assert_eq!(decode_snapshot(&[]), Err(DecodeError::Empty));
        assert_eq!(decode_snapshot(&[SCHEMA_VERSION + 1]), Err(DecodeError::Newer { found: SCHEMA_VERSION + 1 }));
    }
}
