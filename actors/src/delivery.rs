//! [`Deliveries`]: what a consumer receives for a fill once it settled: the
//! plan of a download (which segments, until when) from the read view, and
//! each segment's listing opened from the payload store and checked against
//! what the engine listed before a byte of it is served.
//!
//! Delivery waits for settlement: an accepted fill can still fail on chain
//! (no escrow, a deadline passed), and data handed out cannot be taken back.
//! A settled fill can be downloaded again and again during its type's access
//! period, counted from its settlement.

use std::sync::Arc;
use std::time::Instant;

use alloy_primitives::{Address, B256};
use pat_engine::segment::submission_of;
use pat_engine::{Code, FillRecord, FillStatus, MarketKey, Segment, TimeMs};
use pat_storage::{Listing, PayloadStore, StorageError};
use thiserror::Error;

use crate::listing::observe;

/// A download the read view allows: the settled fill and each segment its
/// units came from, in the fill's allocation order (by provider, segment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPlan {
    pub fill_id: B256,
    pub consumer: Address,
    pub market: MarketKey,
    pub settled_at_ms: TimeMs,
    /// The end of the access period.
    pub access_until_ms: TimeMs,
    /// Each segment once, with the units of it the fill bought.
    pub segments: Vec<(Segment, u32)>,
}

/// Why a fill's data is not served. Nothing changes on any of them.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DeliveryError {
    #[error("no fill has id {0}")]
    UnknownFill(B256),
    #[error("fill {0} was bought by another consumer")]
    NotYourFill(B256),
    #[error("fill {fill_id} is {status}: its data is served once it settles on chain")]
    NotSettled { fill_id: B256, status: &'static str },
    #[error("the access period of fill {fill_id} ended at {until_ms} ms (unix)")]
    AccessExpired { fill_id: B256, until_ms: TimeMs },
    #[error("the payload store did not answer; retry")]
    StorageUnavailable,
    /// The store's object of a listed segment is missing, shredded, fails
    /// its AEAD check or does not match the listing: never served.
    #[error("segment {segment} cannot be served: its stored payload fails its check")]
    Unreadable { segment: u64, reason: &'static str },
}

impl DeliveryError {
    pub fn code(&self) -> Code {
        match self {
            Self::UnknownFill(_) => Code::UnknownFill,
            Self::NotYourFill(_) => Code::NotYourFill,
            Self::NotSettled { .. } => Code::NotSettled,
            Self::AccessExpired { .. } => Code::AccessExpired,
            Self::StorageUnavailable => Code::StorageUnavailable,
            Self::Unreadable { .. } => Code::PayloadUnreadable,
        }
    }
}

/// The plan of `record`'s download for `consumer` at `now_ms`, given its
/// segments (by id) and its type's access period. Checked in this order:
/// the consumer, settlement, the access period.
pub(crate) fn plan(
    record: &FillRecord,
    consumer: Address,
    segment: impl Fn(pat_engine::SegmentId) -> Option<Segment>,
    market: MarketKey,
    access_secs: u64,
    now_ms: TimeMs,
) -> Result<DeliveryPlan, DeliveryError> {
    let fill = &record.fill;
    if fill.consumer != consumer {
        return Err(DeliveryError::NotYourFill(fill.fill_id));
    }
    let FillStatus::Settled { at_ms: settled_at_ms, .. } = record.status else {
        return Err(DeliveryError::NotSettled { fill_id: fill.fill_id, status: record.status.name() });
    };
    let access_until_ms = settled_at_ms.saturating_add(access_secs.saturating_mul(1000));
    if now_ms >= access_until_ms {
        return Err(DeliveryError::AccessExpired { fill_id: fill.fill_id, until_ms: access_until_ms });
    }
    let segments =
        fill.allocations.iter().map(|a| (segment(a.segment).expect("a fill's segments are listed"), a.units)).collect();
    Ok(DeliveryPlan { fill_id: fill.fill_id, consumer, market, settled_at_ms, access_until_ms, segments })
}

/// Reads listings back out of the payload store for delivery.
#[derive(Debug)]
pub struct Deliveries {
    store: Arc<PayloadStore>,
}

impl Deliveries {
    pub fn new(store: Arc<PayloadStore>) -> Self {
        Self { store }
    }

    /// `segment`'s listing from the store: opened (its AEAD checks pass, its
    /// payload hashes to the listed hash) and equal to what the engine listed.
    /// A failure other than the store not answering is counted in
    /// `pat_delivery_failures_total{reason}` and logged with the segment id.
    pub async fn open(&self, segment: &Segment) -> Result<Listing, DeliveryError> {
        let began = Instant::now();
        let got = self.store.get(&segment.payload_hash).await;
        observe("get", began, &got);
        let reason = match got {
            Ok(signed) if signed.submission != submission_of(segment) => "listing_mismatch",
            Ok(signed) => {
                metrics::counter!("pat_delivered_bytes_total").increment(signed.payload.len() as u64);
                return Ok(signed);
            }
            Err(StorageError::Unavailable(e)) => {
                eprintln!("payload store: reading segment {} for delivery: {e}", segment.id.0);
                return Err(DeliveryError::StorageUnavailable);
            }
            Err(StorageError::Missing(_)) => "missing",
            Err(StorageError::Shredded(_)) => "shredded",
            Err(StorageError::UnknownKey { .. }) => "unknown_key",
            Err(StorageError::Corrupt { .. }) => "corrupt",
            Err(StorageError::Config(_) | StorageError::OwnedByAnother { .. } | StorageError::HashMismatch(_)) => {
                "store"
            }
        };
        metrics::counter!("pat_delivery_failures_total", "reason" => reason).increment(1);
        eprintln!("delivery: segment {} (payload {}) not served: {reason}", segment.id.0, segment.payload_hash);
        Err(DeliveryError::Unreadable { segment: segment.id.0, reason })
    }
}
