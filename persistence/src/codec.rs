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
pub const SCHEMA_VERSION: u8 = 4;

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
        2 => v2::event(payload).map_err(malformed),
        3 => v3::event(payload).map_err(malformed),
        4 => v4::event(payload).map_err(malformed),
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
        2 => v2::snapshot(body).map_err(malformed),
        3 => v3::snapshot(body).map_err(malformed),
        4 => v4::snapshot(body).map_err(malformed),
        found => Err(DecodeError::Newer { found }),
    }
}

/// Bytes a snapshot of `state` takes, version byte included.
pub fn snapshot_len(state: &Snapshot) -> usize {
    1 + postcard::experimental::serialized_size(state).unwrap_or(0)
}

/// Schema version 4, written from 2026-12 (issue 15): the broker pays
/// providers' settled credits into their wallets (`Event::ProvidersPaid`,
/// `Snapshot.paid`). Today's types have exactly its shapes
/// (`tests/golden/schema-v4.json`), so it decodes straight into them.
mod v4 {
    use super::{Event, Snapshot};

    pub(super) fn event(payload: &[u8]) -> Result<Event, postcard::Error> {
        postcard::from_bytes(payload)
    }

    pub(super) fn snapshot(body: &[u8]) -> Result<Snapshot, postcard::Error> {
        postcard::from_bytes(body)
    }
}

/// Schema version 3, written from 2026-12 (issue 15): the engine follows
/// consumers' escrow on chain (`Event::EscrowSynced`, `Snapshot.escrow`). Its
/// events are today's: v4 only appended a variant, which a v3 record never
/// holds. Its snapshot had no payouts: nothing was paid, every settled credit
/// is owed.
mod v3 {
    use alloy_primitives::{Address, U256};
    use pat_engine::escrow::EscrowSnapshot;
    use pat_engine::market::Market;
    use pat_engine::registry::ProviderRecord;
    use pat_engine::{EngineConfig, FillRecord, Ledger, Segment, Snapshot as SnapshotV4};
    use serde::Deserialize;

    use super::Event;

    pub(super) fn event(payload: &[u8]) -> Result<Event, postcard::Error> {
        postcard::from_bytes(payload)
    }

    pub(super) fn snapshot(body: &[u8]) -> Result<SnapshotV4, postcard::Error> {
        postcard::from_bytes::<Snapshot>(body).map(Into::into)
    }

    #[derive(Deserialize)]
    pub(super) struct Snapshot {
        pub(super) config: EngineConfig,
        pub(super) markets: Vec<Market>,
        pub(super) segments: Vec<Segment>,
        pub(super) providers: Vec<(Address, ProviderRecord)>,
        pub(super) used_nonces: Vec<(Address, U256)>,
        pub(super) fills: Vec<FillRecord>,
        pub(super) ledger: Ledger,
        pub(super) paused: bool,
        pub(super) phase: u8,
        pub(super) escrow: EscrowSnapshot,
    }

    impl From<Snapshot> for SnapshotV4 {
        fn from(s: Snapshot) -> Self {
            Self {
                config: s.config,
                markets: s.markets,
                segments: s.segments,
                providers: s.providers,
                used_nonces: s.used_nonces,
                fills: s.fills,
                ledger: s.ledger,
                paused: s.paused,
                phase: s.phase,
                escrow: s.escrow,
                paid: Vec::new(),
            }
        }
    }
}

/// Schema version 2, written from 2026-12 (issue 14): settlements carry
/// their time (`FillSettled.at_ms`, `FillStatus::Settled.at_ms`), which
/// starts a consumer's access period, and each segment type has an access
/// period (`TypeParams.access_secs`). Its events are today's: v3 and v4 only
/// appended variants, which a v2 record never holds. Its snapshot had no
/// escrow: every fill that did not fail holds its ask, as a replay of its
/// events gives, and nothing is synced yet: the follower reads the chain from
/// its first block, and each `FillSettled` it finds releases its fill.
mod v2 {
    use alloy_primitives::{Address, U256};
    use pat_engine::escrow::EscrowSnapshot;
    use pat_engine::market::Market;
    use pat_engine::registry::ProviderRecord;
    use pat_engine::{EngineConfig, FillRecord, FillStatus, Ledger, Segment, Snapshot as SnapshotV4};
    use serde::Deserialize;

    use super::Event;
    use super::v3::Snapshot as SnapshotV3;

    pub(super) fn event(payload: &[u8]) -> Result<Event, postcard::Error> {
        postcard::from_bytes(payload)
    }

    pub(super) fn snapshot(body: &[u8]) -> Result<SnapshotV4, postcard::Error> {
        postcard::from_bytes::<Snapshot>(body).map(|s| SnapshotV3::from(s).into())
    }

    #[derive(Deserialize)]
    pub(super) struct Snapshot {
        pub(super) config: EngineConfig,
        pub(super) markets: Vec<Market>,
        pub(super) segments: Vec<Segment>,
        pub(super) providers: Vec<(Address, ProviderRecord)>,
        pub(super) used_nonces: Vec<(Address, U256)>,
        pub(super) fills: Vec<FillRecord>,
        pub(super) ledger: Ledger,
        pub(super) paused: bool,
        pub(super) phase: u8,
    }

    impl From<Snapshot> for SnapshotV3 {
        fn from(s: Snapshot) -> Self {
            let mut holds: Vec<_> = s
                .fills
                .iter()
                .filter(|r| !matches!(r.status, FillStatus::Failed { .. }))
                .map(|r| (r.fill.fill_id, r.fill.consumer, r.fill.ask_paid))
                .collect();
            holds.sort_unstable_by_key(|h| h.0);
            Self {
                config: s.config,
                markets: s.markets,
                segments: s.segments,
                providers: s.providers,
                used_nonces: s.used_nonces,
                fills: s.fills,
                ledger: s.ledger,
                paused: s.paused,
                phase: s.phase,
                escrow: EscrowSnapshot { holds, ..EscrowSnapshot::default() },
            }
        }
    }
}

/// Schema version 1, written from 2026-12 (issue 12): the shapes that
/// changed since, frozen, each with its conversion into today's type. A v1
/// settlement recorded no time: its fill's acceptance stands in (settlement
/// is never earlier, and follows within a clearing round), so an access
/// period counted from it ends at most that much early. A v1 config named no
/// access period: every type gets the default.
mod v1 {
    use alloy_primitives::{Address, B256, U256};
    use pat_engine::fill::Fill;
    use pat_engine::market::{Market, MarketId};
    use pat_engine::params::{
        ACCESS_DEFAULT_SECS, IngestParams, OrderParams, PricingParams, QuotingParams, RiskParams, SpreadParams,
        TypeParams as TypeParamsV2,
    };
    use pat_engine::registry::ProviderRecord;
    use pat_engine::{
        Amount, ConfidenceBand, EngineConfig as EngineConfigV2, Event as EventV2, FillRecord as FillRecordV2,
        FillStatus as FillStatusV2, Ledger, Segment, SegmentType, Snapshot as SnapshotV4, TimeMs, Window,
    };

    use super::v2::Snapshot as SnapshotV2;
    use serde::Deserialize;

    pub(super) fn event(payload: &[u8]) -> Result<EventV2, postcard::Error> {
        postcard::from_bytes::<Event>(payload).map(Into::into)
    }

    pub(super) fn snapshot(body: &[u8]) -> Result<SnapshotV4, postcard::Error> {
        postcard::from_bytes::<Snapshot>(body).map(|s| super::v3::Snapshot::from(super::v2::Snapshot::from(s)).into())
    }

    #[derive(Deserialize)]
    enum Event {
        SegmentListed(Segment),
        SubmissionRefused { provider: Address },
        FillAccepted(Fill),
        FillsSubmitted { fill_ids: Vec<B256>, tx_hash: B256 },
        FillSettled { fill_id: B256 },
        FillFailed { fill_id: B256, reason: String, at_ms: TimeMs },
        UnitsExpired { at_ms: TimeMs },
        ConfigChanged(Box<EngineConfig>),
        PauseSet { paused: bool },
        PhaseAdvanced { phase: u8 },
        MarketUnitsExpired { market: MarketId, at_ms: TimeMs },
    }

    impl From<Event> for EventV2 {
        fn from(e: Event) -> Self {
            match e {
                Event::SegmentListed(s) => Self::SegmentListed(s),
                Event::SubmissionRefused { provider } => Self::SubmissionRefused { provider },
                Event::FillAccepted(f) => Self::FillAccepted(f),
                Event::FillsSubmitted { fill_ids, tx_hash } => Self::FillsSubmitted { fill_ids, tx_hash },
                // Applying it counts from the fill's acceptance (`Registry::settle`).
                Event::FillSettled { fill_id } => Self::FillSettled { fill_id, at_ms: 0 },
                Event::FillFailed { fill_id, reason, at_ms } => Self::FillFailed { fill_id, reason, at_ms },
                Event::UnitsExpired { at_ms } => Self::UnitsExpired { at_ms },
                Event::ConfigChanged(cfg) => Self::ConfigChanged(Box::new((*cfg).into())),
                Event::PauseSet { paused } => Self::PauseSet { paused },
                Event::PhaseAdvanced { phase } => Self::PhaseAdvanced { phase },
                Event::MarketUnitsExpired { market, at_ms } => Self::MarketUnitsExpired { market, at_ms },
            }
        }
    }

    #[derive(Deserialize)]
    struct TypeParams {
        segment_type: SegmentType,
        base_value: Amount,
        tick: Amount,
    }

    #[derive(Deserialize)]
    struct EngineConfig {
        chain_id: u64,
        marketplace: Address,
        broker_margin_cap_bps: u16,
        types: Vec<TypeParams>,
        windows: Vec<Window>,
        bands: Vec<ConfidenceBand>,
        pricing: PricingParams,
        spread: SpreadParams,
        risk: RiskParams,
        ingest: IngestParams,
        orders: OrderParams,
        quoting: QuotingParams,
    }

    impl From<EngineConfig> for EngineConfigV2 {
        fn from(c: EngineConfig) -> Self {
            let types = c
                .types
                .into_iter()
                .map(|t| TypeParamsV2 {
                    segment_type: t.segment_type,
                    base_value: t.base_value,
                    tick: t.tick,
                    access_secs: ACCESS_DEFAULT_SECS,
                })
                .collect();
            Self {
                chain_id: c.chain_id,
                marketplace: c.marketplace,
                broker_margin_cap_bps: c.broker_margin_cap_bps,
                types,
                windows: c.windows,
                bands: c.bands,
                pricing: c.pricing,
                spread: c.spread,
                risk: c.risk,
                ingest: c.ingest,
                orders: c.orders,
                quoting: c.quoting,
            }
        }
    }

    #[derive(Deserialize)]
    enum FillStatus {
        Accepted,
        Submitted { tx_hash: B256 },
        Settled { tx_hash: Option<B256> },
        Failed { reason: String },
    }

    #[derive(Deserialize)]
    struct FillRecord {
        fill: Fill,
        status: FillStatus,
    }

    impl From<FillRecord> for FillRecordV2 {
        fn from(r: FillRecord) -> Self {
            let status = match r.status {
                FillStatus::Accepted => FillStatusV2::Accepted,
                FillStatus::Submitted { tx_hash } => FillStatusV2::Submitted { tx_hash },
                FillStatus::Settled { tx_hash } => FillStatusV2::Settled { tx_hash, at_ms: r.fill.accepted_at_ms },
                FillStatus::Failed { reason } => FillStatusV2::Failed { reason },
            };
            Self { fill: r.fill, status }
        }
    }

    #[derive(Deserialize)]
    struct Snapshot {
        config: EngineConfig,
        markets: Vec<Market>,
        segments: Vec<Segment>,
        providers: Vec<(Address, ProviderRecord)>,
        used_nonces: Vec<(Address, U256)>,
        fills: Vec<FillRecord>,
        ledger: Ledger,
        paused: bool,
        phase: u8,
    }

    impl From<Snapshot> for SnapshotV2 {
        fn from(s: Snapshot) -> Self {
            Self {
                config: s.config.into(),
                markets: s.markets,
                segments: s.segments,
                providers: s.providers,
                used_nonces: s.used_nonces,
                fills: s.fills.into_iter().map(Into::into).collect(),
                ledger: s.ledger,
                paused: s.paused,
                phase: s.phase,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_outside_the_readable_range_are_refused_by_name() {
        let payload = encode_event(&Event::PauseSet { paused: true });
        assert_eq!(decode_event(SCHEMA_VERSION, &payload), Ok(Event::PauseSet { paused: true }));
        assert_eq!(decode_event(0, &payload), Err(DecodeError::Zero));
        assert_eq!(decode_event(SCHEMA_VERSION + 1, &payload), Err(DecodeError::Newer { found: SCHEMA_VERSION + 1 }));
        let newer = DecodeError::Newer { found: 9 }.to_string();
        assert!(newer.contains("newer than this build reads"), "{newer}");
        assert!(matches!(decode_event(1, &[0xff, 0xff]), Err(DecodeError::Malformed { version: 1, .. })));
        assert_eq!(decode_snapshot(&[]), Err(DecodeError::Empty));
        assert_eq!(decode_snapshot(&[SCHEMA_VERSION + 1]), Err(DecodeError::Newer { found: SCHEMA_VERSION + 1 }));
    }
}
