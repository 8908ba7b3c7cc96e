//! Request and response bodies of the REST API. Amounts of PAT are decimal
//! strings of base units (`"2500000000000000000"` is 2.5 PAT): JSON numbers
//! cannot hold them exactly.
//!
//! A request's addresses, hashes, signatures and decimal strings arrive as
//! text and are read by [`pat_engine::text`] into their one accepted form,
//! so a bad one is `400 invalid_request` naming its field, wherever it is.

use alloy_primitives::{Address, B256, U256};
use pat_engine::market::MarketId;
use pat_engine::text;
use pat_engine::{Code, FillRecord, FillStatus, Order, Quote, Segment, SegmentSubmission};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// The fields a provider signs (EIP-712 `SegmentSubmission`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmissionBody {
    /// `0x` hex, lowercase or EIP-55.
    pub provider: String,
    pub segment_type: String,
    pub window: String,
    pub confidence_bps: u16,
    pub window_start: u64,
    pub created_at: u64,
    pub units: u32,
    /// `0x` and 64 hex digits.
    pub payload_hash: String,
}

/// `POST /v1/segments`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentRequest {
    pub submission: SubmissionBody,
    /// 65 bytes, hex with `0x`.
    pub signature: String,
    /// The signal batch in canonical form (RFC 8785), exactly the text whose
    /// UTF-8 bytes hash to `payload_hash`.
    pub payload: String,
}

impl SegmentRequest {
    /// The body for a signed submission (clients, load generators, tests).
    /// The payload must be UTF-8 text, as the API carries it as a string.
    pub fn from_signed(signed: &pat_engine::SignedSegment) -> Result<Self, std::string::FromUtf8Error> {
        let s = &signed.submission;
        Ok(Self {
            submission: SubmissionBody {
                provider: s.provider.to_checksum(None),
                segment_type: s.segmentType.clone(),
                window: s.window.clone(),
                confidence_bps: s.confidenceBps,
                window_start: s.windowStart,
                created_at: s.createdAt,
                units: s.units,
                payload_hash: s.payloadHash.to_string(),
            },
            signature: hex_signature(&signed.signature),
            payload: String::from_utf8(signed.payload.clone())?,
        })
    }

    /// The signed struct, or the field whose text is malformed.
    pub fn submission(&self) -> Result<SegmentSubmission, ApiError> {
        let s = &self.submission;
        Ok(SegmentSubmission {
            provider: field("provider", text::address(&s.provider))?,
            segmentType: s.segment_type.clone(),
            window: s.window.clone(),
            confidenceBps: s.confidence_bps,
            windowStart: s.window_start,
            createdAt: s.created_at,
            units: s.units,
            payloadHash: field("payload_hash", text::b256(&s.payload_hash))?,
        })
    }
}

/// The fields a consumer signs (EIP-712 `Order`), with the market as its key text.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderBody {
    /// `0x` hex, lowercase or EIP-55.
    pub consumer: String,
    /// The market key, such as `PURCHASE_INTENT|7D|0.70-0.85`; signed as keccak256 of this text.
    pub market: String,
    pub qty: u64,
    /// Highest acceptable ask per unit, base units, decimal string.
    pub max_price: String,
    /// Decimal string.
    pub nonce: String,
    /// Unix seconds by which the order must be accepted.
    pub deadline: u64,
}

/// `POST /v1/orders`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    pub order: OrderBody,
    pub signature: String,
}

/// A field's value, or `400 invalid_request` naming the field.
pub fn field<T>(name: &str, read: Result<T, text::TextError>) -> Result<T, ApiError> {
    read.map_err(|e| ApiError::new(Code::InvalidRequest, format!("{name}: {e}")))
}

impl OrderRequest {
    /// The body for a signed order on `market` (whose id the order signs).
    pub fn from_signed(signed: &pat_engine::SignedOrder, market: &pat_engine::MarketKey) -> Self {
        let o = &signed.order;
        Self {
            order: OrderBody {
                consumer: o.consumer.to_checksum(None),
                market: market.to_string(),
                qty: o.qty.to::<u64>(),
                max_price: o.maxPrice.to_string(),
                nonce: o.nonce.to_string(),
                deadline: o.deadline.to::<u64>(),
            },
            signature: hex_signature(&signed.signature),
        }
    }

    /// The signed struct, with the market key hashed as the contract expects.
    pub fn order(&self) -> Result<Order, ApiError> {
        let o = &self.order;
        let key: pat_engine::MarketKey =
            o.market.parse().map_err(|e| ApiError::new(Code::InvalidRequest, format!("market: {e}")))?;
        Ok(Order {
            consumer: field("consumer", text::address(&o.consumer))?,
            market: key.id(),
            qty: U256::from(o.qty),
            maxPrice: field("max_price", text::decimal_u256(&o.max_price))?,
            nonce: field("nonce", text::decimal_u256(&o.nonce))?,
            deadline: U256::from(o.deadline),
        })
    }
}

fn hex_signature(bytes: &[u8]) -> String {
    format!("0x{}", alloy_primitives::hex::encode(bytes))
}

/// Decodes a `0x`-prefixed hex signature.
pub fn signature_bytes(signature: &str) -> Result<Vec<u8>, ApiError> {
    field("signature", text::hex_bytes(signature))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QuoteBody {
    pub market: String,
    pub bid: String,
    pub ask: String,
    pub price: String,
    pub spread_bps: u32,
    pub seq: u64,
    pub valid_until_ms: u64,
    /// `null` when quoting, else why not.
    pub halted: Option<String>,
}

impl QuoteBody {
    pub fn new(key: &pat_engine::MarketKey, q: &Quote) -> Self {
        Self {
            market: key.to_string(),
            bid: q.bid.to_string(),
            ask: q.ask.to_string(),
            price: q.price.to_string(),
            spread_bps: q.spread_bps,
            seq: q.seq,
            valid_until_ms: q.valid_until_ms,
            halted: q.halted.map(|h| h.code().to_owned()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MarketBody {
    pub market: String,
    #[schema(value_type = String)]
    pub market_id: B256,
    pub quote: QuoteBody,
    pub supply_units: u64,
    pub providers: usize,
    pub exposure: String,
    pub group_exposure: String,
    pub listed_units: u64,
    pub sold_units: u64,
    pub expired_units: u64,
}

impl From<&pat_actors::MarketView> for MarketBody {
    fn from(m: &pat_actors::MarketView) -> Self {
        Self {
            market: m.key.to_string(),
            market_id: m.key.id(),
            quote: QuoteBody::new(&m.key, &m.quote),
            supply_units: m.supply_units,
            providers: m.provider_count,
            exposure: m.exposure.to_string(),
            group_exposure: m.group_exposure.to_string(),
            listed_units: m.counters.listed,
            sold_units: m.counters.sold,
            expired_units: m.counters.expired,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SegmentBody {
    pub id: u64,
    #[schema(value_type = String)]
    pub provider: Address,
    pub market: String,
    pub confidence_bps: u16,
    pub window_start_ms: u64,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    pub units: u32,
    #[schema(value_type = String)]
    pub payload_hash: B256,
    pub payload_bytes: u32,
    pub signal_count: u32,
    pub quality: QualityBody,
    pub listed_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QualityBody {
    pub score_bps: u16,
    pub completeness_bps: u16,
    pub timeliness_bps: u16,
    pub consistency_bps: u16,
    pub accuracy_bps: u16,
    pub reliability_bps: u16,
}

impl From<&Segment> for SegmentBody {
    fn from(s: &Segment) -> Self {
        let q = &s.quality;
        Self {
            id: s.id.0,
            provider: s.provider,
            market: s.market.to_string(),
            confidence_bps: s.confidence_bps,
            window_start_ms: s.window_start_ms,
            created_at_ms: s.created_at_ms,
            expires_at_ms: s.expires_at_ms,
            units: s.units,
            payload_hash: s.payload_hash,
            payload_bytes: s.payload_bytes,
            signal_count: s.signal_count,
            quality: QualityBody {
                score_bps: q.score(),
                completeness_bps: q.completeness,
                timeliness_bps: q.timeliness,
                consistency_bps: q.consistency,
                accuracy_bps: q.accuracy,
                reliability_bps: q.reliability,
            },
            listed_at_ms: s.listed_at_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AllocationBody {
    #[schema(value_type = String)]
    pub provider: Address,
    pub segment_id: u64,
    pub units: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FillBody {
    #[schema(value_type = String)]
    pub fill_id: B256,
    #[schema(value_type = String)]
    pub market_id: B256,
    pub market_index: u32,
    #[schema(value_type = String)]
    pub consumer: Address,
    pub nonce: String,
    pub qty: u64,
    pub ask: String,
    pub bid: String,
    pub ask_paid: String,
    pub bid_credited: String,
    pub broker_spread: String,
    pub accepted_at_ms: u64,
    pub allocations: Vec<AllocationBody>,
    /// `accepted`, `submitted`, `settled` or `failed`.
    pub status: String,
    #[schema(value_type = Option<String>)]
    pub tx_hash: Option<B256>,
    pub reason: Option<String>,
    /// When it settled: its access period counts from here.
    pub settled_at_ms: Option<u64>,
}

/// A fill's status as the API and the feed spell it: the status name, the
/// transaction it went out in, and why it failed.
pub fn status_parts(status: &FillStatus) -> (&'static str, Option<B256>, Option<&str>) {
    let (tx_hash, reason) = match status {
        FillStatus::Accepted => (None, None),
        FillStatus::Submitted { tx_hash } => (Some(*tx_hash), None),
        FillStatus::Settled { tx_hash, .. } => (*tx_hash, None),
        FillStatus::Failed { reason } => (None, Some(reason.as_str())),
    };
    (status.name(), tx_hash, reason)
}

impl From<&FillRecord> for FillBody {
    fn from(r: &FillRecord) -> Self {
        let f = &r.fill;
        let (status, tx_hash, reason) = status_parts(&r.status);
        let MarketId(market_index) = f.market;
        Self {
            fill_id: f.fill_id,
            market_id: f.market_key_id,
            market_index,
            consumer: f.consumer,
            nonce: f.nonce.to_string(),
            qty: f.qty,
            ask: f.ask.to_string(),
            bid: f.bid.to_string(),
            ask_paid: f.ask_paid.to_string(),
            bid_credited: f.bid_credited.to_string(),
            broker_spread: f.broker_spread.to_string(),
            accepted_at_ms: f.accepted_at_ms,
            allocations: f
                .allocations
                .iter()
                .map(|a| AllocationBody { provider: a.provider, segment_id: a.segment.0, units: a.units })
                .collect(),
            status: status.to_owned(),
            tx_hash,
            reason: reason.map(str::to_owned),
            settled_at_ms: match r.status {
                FillStatus::Settled { at_ms, .. } => Some(at_ms),
                _ => None,
            },
        }
    }
}

/// `GET /v1/providers/{address}/earnings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EarningsBody {
    #[schema(value_type = String)]
    pub provider: Address,
    /// Bid credited by settled fills, base units: what the provider has earned.
    pub settled: String,
    /// Bid credited by fills accepted but not settled yet: it may still fail.
    pub pending: String,
}

/// `GET /v1/consumers/{address}/escrow`: the consumer's escrow as the engine counts it
/// (base units), from the chain at `synced_block`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EscrowBody {
    #[schema(value_type = String)]
    pub consumer: Address,
    /// `escrowOf` at the synced block.
    pub escrow: String,
    /// The requested withdrawal at the synced block (0 if none).
    pub withdrawing: String,
    /// Asks of the consumer's fills not settled as of the synced block.
    pub held: String,
    /// escrow - withdrawing - held, at least 0: the most an order may cost now.
    pub free: String,
    /// The last block the engine synced from the chain (0: none yet).
    pub synced_block: u64,
    /// Whether orders must be covered by free escrow (config `escrow.required`).
    pub required: bool,
    /// When the engine last read the chain up to its head, unix ms (absent: not since it
    /// started; orders are refused while this is older than `escrow.stale_after_ms`).
    pub current_at_ms: Option<u64>,
}

/// Every error: a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConfigErrorBody {
    /// Dotted key, such as `spread.max_bps`.
    pub key: String,
    pub reason: String,
}

/// `422` from `POST /v1/admin/reload`: the file is invalid and the running config stays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InvalidConfigBody {
    /// `invalid_config`.
    pub code: String,
    pub message: String,
    pub errors: Vec<ConfigErrorBody>,
}

/// `POST /v1/admin/phase`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhaseBody {
    pub phase: u8,
}

/// The answer of `pause` and `resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PausedBody {
    pub paused: bool,
}

/// The answer of a reload that applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReloadedBody {
    pub reloaded: bool,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HealthBody {
    /// `ok`.
    pub status: String,
}
