//! The engine actor's messages: reads (fills, segments, credits), the
//! operator's changes (pause, phase, reload, snapshot, shutdown), the clearing
//! side's hand-off of durable fills and its records of submissions and
//! outcomes, and the subscriptions to changed quotes and fill updates. Each
//! names its reply; what the engine actor does with it is in [`crate::engine`].

use std::sync::Arc;

use actix::prelude::*;
use alloy_primitives::{Address, B256};
use pat_engine::{EngineConfig, Fill, FillRecord, FillStatus, MarketId, Quote, Segment, SegmentId, TimeMs};
use pat_persistence::SnapshotReport;
use tokio::sync::broadcast;

use crate::error::EngineError;

/// One fill and its status.
#[derive(Message)]
#[rtype(result = "Option<FillRecord>")]
pub struct GetFill(pub B256);

/// One segment.
#[derive(Message)]
#[rtype(result = "Option<Segment>")]
pub struct GetSegment(pub SegmentId);

/// What this consumer may download of a fill now: the plan, or why not.
#[derive(Message)]
#[rtype(result = "Result<crate::delivery::DeliveryPlan, crate::delivery::DeliveryError>")]
pub struct PlanDelivery {
    pub fill_id: B256,
    pub consumer: alloy_primitives::Address,
}

/// Whether a listed segment has this payload hash.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct PayloadListed(pub B256);

/// The payload hash of every listed segment: what the payload store keeps.
#[derive(Message)]
#[rtype(result = "alloy_primitives::map::B256Set")]
pub struct ListedPayloads;

/// Segments matching a filter, newest first, at most `limit`.
#[derive(Message, Debug, Clone, Default)]
#[rtype(result = "Vec<Segment>")]
pub struct SearchSegments {
    pub segment_type: Option<String>,
    pub window: Option<String>,
    pub band: Option<String>,
    pub min_quality_bps: Option<u16>,
    pub limit: usize,
}

/// Fills of one consumer, and credits of one provider.
#[derive(Message)]
#[rtype(result = "Vec<FillRecord>")]
pub struct ConsumerFills(pub Address);

/// PAT credited to a provider by its fills, base units.
#[derive(Message)]
#[rtype(result = "Credits")]
pub struct ProviderCredits(pub Address);

/// A provider's credits: by settled fills, and by fills accepted but not
/// settled yet (a failed fill's credits are gone from both); and how much of
/// the settled ones the broker's payouts paid into its wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credits {
    pub settled: u128,
    pub pending: u128,
    pub paid: u128,
}

/// A consumer's escrow as the engine counts it, and the block it was synced at.
#[derive(Message)]
#[rtype(result = "EscrowStatus")]
pub struct ConsumerEscrow(pub Address);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscrowStatus {
    pub view: pat_engine::escrow::EscrowView,
    /// The last block the escrow is current to (0: none read yet).
    pub synced_block: u64,
    /// Whether orders must be covered by free escrow.
    pub required: bool,
    /// When the follower last read the chain to its head (`None`: not since this start).
    pub current_at_ms: Option<u64>,
}

/// The last block the engine's escrow is current to: where the escrow actor resumes (after
/// a restart, the last block of a journaled sync).
#[derive(Message)]
#[rtype(result = "u64")]
pub struct EscrowCursor;

/// What the chain showed of escrow up to a confirmed block: journaled (unless it changed
/// nothing but the block), then applied.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct SyncEscrow {
    pub sync: pat_engine::escrow::EscrowSync,
    /// The sync reaches the chain's confirmed head: the view is current as of now.
    pub current: bool,
}

/// The emergency switch: journaled, then applied.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct SetPaused(pub bool);

/// Advance the market phase: journaled, then applied.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct AdvancePhase(pub u8);

/// Apply a validated config live: journaled, then applied.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct Reconfigure(pub Arc<EngineConfig>);

/// Write a snapshot now (also done on a timer).
#[derive(Message)]
#[rtype(result = "Result<SnapshotReport, EngineError>")]
pub struct TakeSnapshot;

/// Stop the actor and its arbiter, after a snapshot if `snapshot`; replies
/// once the data directory is released (the actor dropped), so another engine
/// may open it.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct Shutdown {
    pub snapshot: bool,
}

/// Hands the clearing side up to `max` accepted fills that are durable and
/// were accepted no later than `accepted_before_ms`, oldest first. Each fill
/// is handed over once per run (and again after a restart, while still open).
#[derive(Message)]
#[rtype(result = "Vec<Fill>")]
pub struct TakeDurableFills {
    pub max: usize,
    pub accepted_before_ms: TimeMs,
}

/// Gives back fills the clearing side took but could not submit.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReturnFills(pub Vec<B256>);

/// Hands over again, first, every open fill that the clearing side took and
/// neither gave back nor settled: every clearing actor sends it before it
/// takes anything (after a crash, what its predecessor held died with it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RequeueTaken;

/// Records that fills went to the chain in `tx_hash`; replies once durable.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct RecordSubmission {
    pub fill_ids: Vec<B256>,
    pub tx_hash: B256,
}

/// The chain's decision on one fill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    Settled,
    /// Rejected by the contract, with its reason: the fill fails and its units return.
    Rejected(String),
}

/// Records the chain's decisions; replies once they are durable.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct RecordOutcomes(pub Vec<(B256, Settlement)>);

/// A receiver of the markets whose quotes changed, one batch per tick.
#[derive(Message)]
#[rtype(result = "broadcast::Receiver<Arc<Vec<Quote>>>")]
pub struct SubscribeQuotes;

/// A receiver of fill status changes, each sent once its event is durable.
#[derive(Message)]
#[rtype(result = "broadcast::Receiver<FillUpdate>")]
pub struct SubscribeFills;

/// A fill's new status, durable: `accepted`, `submitted`, `settled` or `failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillUpdate {
    pub fill_id: B256,
    pub consumer: Address,
    pub market: MarketId,
    pub status: FillStatus,
}

/// Stops the actor: sent by `Shutdown` once its snapshot is written (planned),
/// and by a failed append (for the supervisor to restart it from disk).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Stop;
